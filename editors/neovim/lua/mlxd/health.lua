-- :checkhealth mlxd: Neovim version, the daemon binary, that it starts (version), model state
-- and backends. With no daemon running, a short-lived one is started over stdio to ask.
local M = {}

local health = vim.health
local uv = vim.uv or vim.loop

local PROBE_TIMEOUT_MS = 20000

local function encode(msg)
  local body = vim.json.encode(msg)
  return ('Content-Length: %d\r\n\r\n%s'):format(#body, body)
end

-- Split complete Content-Length frames off `buf`; returns the decoded messages and the rest.
local function decode_frames(buf)
  local out = {}
  while true do
    local hdr_end = buf:find('\r\n\r\n', 1, true)
    if not hdr_end then
      break
    end
    local len = tonumber(buf:sub(1, hdr_end):match('[Cc]ontent%-[Ll]ength: *(%d+)'))
    if not len or #buf < hdr_end + 3 + len then
      break
    end
    local body = buf:sub(hdr_end + 4, hdr_end + 3 + len)
    buf = buf:sub(hdr_end + 4 + len)
    local ok, msg = pcall(vim.json.decode, body, { luanil = { object = true } })
    if ok then
      out[#out + 1] = msg
    end
  end
  return out, buf
end

--- Start `cmd`, initialize, ask for the models, shut down. Model preloading is turned off so the
--- probe stays quick. Returns {init=result, models=result, status=last status, err=string?}.
function M.probe(cmd, init_options)
  local opts = vim.deepcopy(init_options or {})
  opts['local'] = vim.tbl_extend('force', opts['local'] or {}, { preload = false })
  local pending, messages, stderr = '', {}, {}
  local exit_code ---@type integer?
  local ok, proc = pcall(vim.system, cmd, {
    stdin = true,
    stdout = function(_, data)
      if data then
        pending = pending .. data
      end
    end,
    stderr = function(_, data)
      if data then
        stderr[#stderr + 1] = data
      end
    end,
  }, function(done)
    exit_code = done.code
  end)
  if not ok then
    return { err = tostring(proc) }
  end
  local function send(msg)
    pcall(proc.write, proc, encode(msg))
  end
  local function wait_for(id)
    local found
    vim.wait(PROBE_TIMEOUT_MS, function()
      local msgs
      msgs, pending = decode_frames(pending)
      for _, m in ipairs(msgs) do
        messages[#messages + 1] = m
        if m.method and m.id ~= nil then
          send({ jsonrpc = '2.0', id = m.id, result = vim.NIL }) -- e.g. workDoneProgress/create
        end
      end
      for _, m in ipairs(messages) do
        if m.id == id and m.method == nil then
          found = m
        end
      end
      return found ~= nil or exit_code ~= nil
    end, 20)
    return found
  end

  local res = {}
  send({
    jsonrpc = '2.0',
    id = 1,
    method = 'initialize',
    params = {
      processId = uv.os_getpid(),
      rootUri = vim.NIL,
      capabilities = vim.empty_dict(),
      initializationOptions = opts,
      clientInfo = { name = 'mlxd-checkhealth' },
    },
  })
  local init = wait_for(1)
  if not init and exit_code then
    res.err = ('it exited with code %d'):format(exit_code)
  elseif not init then
    res.err = 'no answer to initialize within ' .. (PROBE_TIMEOUT_MS / 1000) .. ' s'
  elseif init.error then
    res.err = 'initialize failed: ' .. tostring(init.error.message)
  else
    res.init = init.result
    send({ jsonrpc = '2.0', method = 'initialized', params = vim.empty_dict() })
    send({ jsonrpc = '2.0', id = 2, method = 'mlxd/models', params = vim.empty_dict() })
    local models = wait_for(2)
    res.models = models and models.result
    send({ jsonrpc = '2.0', id = 3, method = 'shutdown' })
    wait_for(3)
    send({ jsonrpc = '2.0', method = 'exit' })
  end
  for _, m in ipairs(messages) do
    if m.method == 'mlxd/status' then
      res.status = m.params
    end
  end
  pcall(proc.write, proc, nil) -- close stdin: a daemon that missed `exit` still sees EOF
  proc:wait(5000) -- kills it when it does not exit in time
  res.stderr = table.concat(stderr)
  return res
end

local function report_status(st)
  if not st then
    health.info('no mlxd/status received yet')
    return
  end
  local msg = ('state: %s%s'):format(st.state, st.message and (' (' .. st.message .. ')') or '')
  if st.state == 'ready' or st.state == 'loading' or st.state == 'starting' then
    health.ok(msg)
  elseif st.state == 'degraded' then
    health.warn(msg)
  else
    health.error(msg)
  end
  for name, s in vim.spairs(st.backends or {}) do
    local line = ('backend %s: %s'):format(name, s)
    if s == 'ok' then
      health.ok(line)
    elseif s == 'unconfigured' then
      health.info(line)
    elseif s == 'no_key' then
      health.warn(('backend %s: no API key'):format(name), (':MlxdSetKey %s'):format(name))
    elseif s == 'cooldown' then
      health.warn(line, 'it failed recently; mlxd retries it after the cooldown')
    else
      health.error(line)
    end
  end
end

local function report_models(models)
  if not models then
    health.warn('mlxd/models gave no answer')
    return
  end
  for _, m in ipairs(models.models or {}) do
    health.info(('model %s [%s]%s'):format(m.name, m.backend, m.loaded and ' loaded' or ''))
  end
  local d = models.defaults or {}
  health.info(('defaults: chat=%s complete=%s inline=%s'):format(
    tostring(d.chat),
    tostring(d.complete),
    tostring(d.inline)
  ))
end

local function server_version(info)
  info = info or {}
  return ('%s %s'):format(info.name or 'mlxd', info.version or '(no version)')
end

function M.check()
  local mlxd = require('mlxd')
  health.start('mlxd')

  local v = vim.version()
  local vstr = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.10') == 0 then
    health.error(
      'Neovim ' .. vstr .. ' is too old',
      'mlxd needs Neovim 0.10 or newer (0.12 for native ghost text)'
    )
    return
  end
  if not mlxd.config then
    health.warn(
      'require("mlxd").setup() was not called',
      'add it to your config; defaults are checked below'
    )
  end
  health.ok(('Neovim %s, ghost text: %s'):format(vstr, mlxd.ghost_impl()))

  local cmd = mlxd.cmd()
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error(
      ('daemon not found: %q is not executable'):format(cmd[1]),
      { 'install mlxd (`pip install mlxd`) or set `cmd` in setup()' }
    )
    return
  end
  health.ok(('daemon: %s (cmd: %s)'):format(exe, table.concat(cmd, ' ')))

  local client = mlxd.client()
  if client and client.initialized then
    health.ok(('running: %s, client id %d'):format(server_version(client.server_info), client.id))
    if not client.server_capabilities.inlineCompletionProvider then
      health.warn('the daemon does not offer inline completion (ghost text off)')
    end
    report_status(mlxd.state.status)
    local resp
    if vim.fn.has('nvim-0.11') == 1 then
      resp = client:request_sync('mlxd/models', vim.empty_dict(), 5000, 0)
    else
      resp = client.request_sync('mlxd/models', vim.empty_dict(), 5000, 0)
    end
    report_models(resp and resp.result)
    return
  end

  health.info('no daemon running in this Neovim: starting one to check it')
  local start = uv.hrtime()
  local res = M.probe(cmd, (mlxd.config or mlxd.defaults).init_options)
  if res.err then
    local tail = res.stderr and res.stderr:sub(-600) or ''
    local advice = tail ~= '' and { 'stderr: ' .. tail } or nil
    health.error('the daemon did not start: ' .. res.err, advice)
    return
  end
  health.ok(('starts: %s in %d ms'):format(
    server_version(res.init and res.init.serverInfo),
    (uv.hrtime() - start) / 1e6
  ))
  report_status(res.status)
  report_models(res.models)
end

return M
