-- mlxd for Neovim: starts the daemon with the built-in LSP client and wires ghost text,
-- chat and status to it. `require("mlxd").setup(opts)` is the only call a user needs.
local M = {}

local uv = vim.uv or vim.loop
local launch = require('mlxd.launch')
local has_011 = vim.fn.has('nvim-0.11') == 1

M.name = 'mlxd'

---@class mlxd.Keymaps
---@field accept string|false
---@field accept_word string|false
---@field accept_line string|false
---@field suggest string|false
---@field dismiss string|false
---@field next string|false
---@field prev string|false

---@class mlxd.Opts
M.defaults = {
  -- The daemon command. A string is the path of the `mlxd` executable; a list is used as is.
  cmd = { 'mlxd', 'serve' },
  -- TOML config file handed to the daemon as `--config PATH` (nil: the daemon's own default).
  config_file = nil,
  -- Filetypes to attach to; nil attaches to every file buffer.
  filetypes = nil,
  -- Sent as LSP `initializationOptions`: same snake_case schema as the TOML config,
  -- e.g. { local = { model = "..." }, routing = { cloud = true } }. Overrides the file.
  init_options = {},
  ghost = {
    enabled = true,
    -- "auto": native `vim.lsp.inline_completion` on 0.12+, the plugin's own otherwise.
    -- "native" / "fallback" force one ("fallback" works on 0.12 too).
    implementation = 'auto',
    -- Wait this long after the last keystroke before asking (fallback only; 0.12 uses 200 ms).
    debounce_ms = 200,
    -- Ghost text per filetype; '*' is every filetype not listed. :MlxdToggle overrides it.
    filetypes = {
      ['*'] = true,
      markdown = false,
      text = false,
      help = false,
      gitcommit = false,
      gitrebase = false,
      hgcommit = false,
      svn = false,
    },
  },
  -- Insert-mode keys for ghost text; false disables one. Tab is left alone unless you set it.
  -- When there is no suggestion the key does what it does without the plugin (an ALT chord:
  -- <Esc> and the key).
  keymaps = {
    accept = '<M-l>',
    accept_word = '<M-Right>',
    accept_line = '<M-L>',
    suggest = '<M-\\>', -- ask now, without waiting for a keystroke
    dismiss = '<C-]>',
    next = '<M-]>',
    prev = '<M-[>',
  },
  chat = {
    -- "vertical" | "horizontal" | "tab" | "current": where the chat buffer opens.
    split = 'vertical',
    -- Move the cursor into the chat window when it opens.
    focus = true,
    -- Request knobs sent with every chat (nil: the daemon's defaults).
    max_tokens = nil,
    temperature = nil,
    model = nil,
    backend = nil,
    -- Optional system message that starts every conversation.
    system = nil,
  },
}

---@type table? the merged options once setup() ran
M.config = nil

-- Shared runtime state (one daemon per Neovim).
M.state = {
  status = nil, -- last `mlxd/status` params
  progress = {}, -- work-done token -> {title, message, percentage, cancellable, client_id}
  last = nil, -- {backend, model, attempts} of the last finished request
  exited = nil, -- once the daemon stopped: 'stopped', or why ("signal 9", "exit code 1")
  initialized = {}, -- client id -> true once `initialize` succeeded
}

-- partialResultToken -> function(value), or false once finished (late deltas are dropped).
local listeners = {}
local token_seq = 0

--- A fresh partial-result token, unique within this Neovim.
function M.new_token(kind)
  token_seq = token_seq + 1
  return ('mlxd-%s-%d-%d'):format(kind or 'req', uv.os_getpid(), token_seq)
end

--- Route `$/progress` for `token` to `fn(value)` until unlisten(token).
function M.listen(token, fn)
  listeners[token] = fn
end

function M.unlisten(token)
  listeners[token] = false
end

local function redraw()
  vim.schedule(function()
    pcall(vim.cmd.redrawstatus, { bang = true })
  end)
end

local function fire(pattern, data)
  vim.api.nvim_exec_autocmds('User', { pattern = pattern, modeline = false, data = data })
end

-- Our partial results go to their listener; work-done progress (model loading) is recorded for
-- status() and handed to Neovim's own handler so `vim.lsp.status()` and LspProgress still work.
local function progress_handler(err, params, ctx, config)
  local fn = params and listeners[params.token]
  if fn ~= nil then
    if fn then
      fn(params.value)
    end
    return
  end
  local value = params and params.value
  if type(value) == 'table' and value.kind then
    if value.kind == 'end' then
      M.state.progress[params.token] = nil
    else
      local prev = M.state.progress[params.token] or {}
      local cancellable = value.cancellable
      if cancellable == nil then
        cancellable = prev.cancellable
      end
      M.state.progress[params.token] = {
        title = value.title or prev.title,
        message = value.message or prev.message,
        percentage = value.percentage or prev.percentage,
        cancellable = cancellable,
        client_id = ctx and ctx.client_id,
      }
    end
    redraw()
  end
  return vim.lsp.handlers['$/progress'](err, params, ctx, config)
end

local function status_handler(_, params)
  M.state.status = params
  redraw()
  fire('MlxdStatus', params)
end

--- The resolved daemon command line.
---@return string[]
function M.cmd()
  local opts = M.config or M.defaults
  local cmd = opts.cmd
  if type(cmd) == 'string' then
    cmd = { cmd, 'serve' }
  end
  cmd = vim.deepcopy(cmd)
  if type(cmd[1]) == 'string' and cmd[1]:find('^[~$]') then
    cmd[1] = vim.fs.normalize(cmd[1]) -- '~/.venvs/mlxd/bin/mlxd': spawn does not expand it
  end
  if opts.config_file then
    vim.list_extend(cmd, { '--config', vim.fn.expand(opts.config_file) })
  end
  return cmd
end

--- The LSP client config handed to vim.lsp.config / vim.lsp.start.
function M.client_config()
  local opts = M.config or M.defaults
  local init_options = opts.init_options
  if init_options == nil or vim.tbl_isempty(init_options) then
    -- An empty Lua table encodes as a JSON array; send nothing instead.
    init_options = nil
  end
  return {
    name = M.name,
    cmd = M.cmd(),
    filetypes = opts.filetypes,
    -- The daemon serves single files: no project root needed.
    workspace_required = false,
    init_options = init_options,
    handlers = {
      ['$/progress'] = progress_handler,
      ['mlxd/status'] = status_handler,
    },
    on_init = function(client)
      M.state.initialized[client.id] = true
    end,
    on_exit = function(code, signal, client_id)
      local initialized = M.state.initialized[client_id] == true
      local client = vim.lsp.get_client_by_id(client_id)
      local bufs = client and vim.tbl_keys(client.attached_buffers) or {}
      local why = require('mlxd.restart').reason(code, signal)
      vim.schedule(function() -- a fast event: no Vimscript functions here
        launch.on_exit(code, initialized, M.cmd())
        require('mlxd.chat')._on_client_exit(client_id, why)
        require('mlxd.restart').on_exit(client_id, why, initialized, bufs)
      end)
      M.state.exited = why or 'stopped'
      M.state.exited_code = code
      M.state.status = nil
      M.state.progress = {}
      redraw()
    end,
  }
end

--- The running mlxd client, if any.
---@return vim.lsp.Client?
function M.client()
  for _, c in ipairs(vim.lsp.get_clients({ name = M.name })) do
    if not (c.is_stopped and c:is_stopped()) then
      return c
    end
  end
end

--- Send a request; returns the request id or nil. Works on 0.10 (dot) and 0.11+ (colon) clients.
function M.request(client, method, params, handler, bufnr)
  local ok, id
  if has_011 then
    ok, id = client:request(method, params, handler, bufnr)
  else
    ok, id = client.request(method, params, handler, bufnr)
  end
  return ok and id or nil
end

--- Send a notification; false when the client could not. 0.10 (dot) and 0.11+ (colon) clients.
function M.notify(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel_request(client, id)
  if has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

--- Stop the daemon's work-done tasks that can be stopped (a model download or load): sends
--- `window/workDoneProgress/cancel` for each; the daemon ends the progress and says why.
---@return string[] messages of the tasks cancelled (empty: nothing to cancel)
function M.cancel_load()
  local stopped = {}
  for token, p in pairs(M.state.progress) do
    local client = p.cancellable and p.client_id and vim.lsp.get_client_by_id(p.client_id)
    if client then
      M.notify(client, 'window/workDoneProgress/cancel', { token = token })
      stopped[#stopped + 1] = p.message or p.title or token
    end
  end
  return stopped
end

--- Call fn(client) once a client is initialized, starting one (without attaching a buffer) when
--- none runs, so chat works from any buffer. fn(nil, err) when that fails; the user was told.
function M.with_client(fn)
  local client = M.client()
  if not client then
    local problem = launch.blocker(M.cmd())
    if problem then
      launch.report(problem)
      fn(nil, problem)
      return
    end
    local id
    if has_011 then
      id = vim.lsp.start(M.client_config(), { attach = false })
    else
      id = vim.lsp.start_client(M.client_config())
    end
    client = id and vim.lsp.get_client_by_id(id)
    if not client then
      local msg = 'mlxd: could not start ' .. table.concat(M.cmd(), ' ') .. '; :checkhealth mlxd'
      launch.report(msg)
      fn(nil, msg)
      return
    end
  end
  if client.initialized then
    fn(client)
    return
  end
  local deadline = uv.now() + 60000
  local timer = assert(uv.new_timer())
  timer:start(
    20,
    20,
    vim.schedule_wrap(function()
      if timer:is_closing() then
        return
      end
      local stopped = client.is_stopped and client:is_stopped()
      if client.initialized or stopped or uv.now() > deadline then
        timer:stop()
        timer:close()
        if client.initialized then
          fn(client)
        elseif stopped then
          fn(nil, 'mlxd: the daemon stopped before it started') -- on_exit said why
        else
          local msg = 'mlxd: the daemon did not initialize within 60 s; :checkhealth mlxd'
          launch.report(msg)
          fn(nil, msg)
        end
      end
    end)
  )
end

--- Statusline text: daemon state, loading progress, the backend that served last and any
--- fallback. "" while no daemon runs.
function M.status()
  local client = M.client()
  if not client then
    local short = launch.short()
    if short then
      return short
    end
    local why = M.state.exited
    return why and (why == 'stopped' and 'mlxd: stopped' or ('mlxd: stopped (%s)'):format(why))
      or ''
  end
  for _, p in pairs(M.state.progress) do
    local title = p.title ~= M.name and p.title or nil -- the daemon titles its work "mlxd"
    local what = (title and p.message) and (title .. ': ' .. p.message) or p.message or title
    local s = 'mlxd: ' .. (what or 'working')
    -- A download's message has its own percentage ("312 / 869 MB (35%)"): one is enough.
    if p.percentage and not s:find('%d%%%)$') then
      s = s .. (' %d%%'):format(p.percentage)
    end
    return s
  end
  local st = M.state.status
  if not client.initialized or not st then
    return 'mlxd: starting'
  end
  local parts = { 'mlxd: ' .. st.state }
  if vim.b.mlxd_ghost and not require('mlxd.toggle').enabled(0) then
    parts[#parts + 1] = 'ghost off'
  end
  local last = M.state.last
  if last and last.backend then
    local used = last.backend
    if last.attempts and #last.attempts > 0 then
      local skipped = {}
      for _, a in ipairs(last.attempts) do
        skipped[#skipped + 1] = a.backend
      end
      used = used .. ' (fallback from ' .. table.concat(skipped, ', ') .. ')'
    end
    parts[#parts + 1] = used
  end
  local bad = {}
  for name, s in vim.spairs(st.backends or {}) do
    if s == 'cooldown' or s == 'error' then
      bad[#bad + 1] = name .. ' ' .. s
    end
  end
  if #bad > 0 then
    parts[#parts + 1] = table.concat(bad, ', ')
  end
  if st.state == 'error' and st.message then
    parts[#parts + 1] = st.message
  end
  return table.concat(parts, ' | ')
end

--- Remember which backend served a request, for status().
function M.record_result(result)
  if type(result) == 'table' then
    M.state.last = { backend = result.backend, model = result.model, attempts = result.attempts }
    redraw()
  end
end

-- Ghost text: lua/mlxd/inline.lua; its public functions are part of this module's API.
local inline = require('mlxd.inline')
for _, name in ipairs({
  'ghost_impl',
  'ghost_text',
  'apply_text',
  'first_word',
  'first_line',
  'rest',
  'accept',
  'accept_word',
  'accept_line',
  'suggest',
  'dismiss',
  'next',
  'prev',
}) do
  M[name] = inline[name]
end

local function on_attach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if client and client.name == M.name then
    M.state.exited = nil
    inline.enable(args.buf, client)
    require('mlxd.cursor').attach(args.buf, client)
    require('mlxd.copy').attach(args.buf, client)
  end
end

local function on_detach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if not (client and client.name == M.name) then
    return
  end
  require('mlxd.cursor').detach(args.buf)
  require('mlxd.copy').detach(args.buf)
  if inline.buf_impl(args.buf) == 'fallback' then
    require('mlxd.ghost').detach(args.buf)
  end
  vim.b[args.buf].mlxd_ghost = nil
end

-- Ghost text must not look like code in any terminal: a grey and italic of its own, with cterm
-- attributes too (Comment and 0.12's ComplHint have only a GUI colour in the default scheme).
-- `default`: a colorscheme or the user's own :highlight wins.
local function set_highlights()
  vim.api.nvim_set_hl(0, 'MlxdGhost', {
    fg = '#808080',
    ctermfg = 244,
    italic = true,
    cterm = { italic = true },
    default = true,
  })
end

--- Configure and enable the daemon. Safe to call again with new options.
---@param opts? table see M.defaults and `:help mlxd-setup`
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  -- Lists replace the default instead of merging into it index by index.
  for _, key in ipairs({ 'cmd', 'filetypes' }) do
    if opts and opts[key] ~= nil then
      M.config[key] = opts[key]
    end
  end
  set_highlights()
  launch.reset()

  local group = vim.api.nvim_create_augroup('mlxd', { clear = true })
  vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = set_highlights })
  vim.api.nvim_create_autocmd('LspAttach', { group = group, callback = on_attach })
  vim.api.nvim_create_autocmd('LspDetach', { group = group, callback = on_detach })
  vim.api.nvim_create_autocmd('LspRequest', {
    group = group,
    callback = function(args)
      require('mlxd.chat')._on_lsp_request(args.data)
    end,
  })

  local cfg = M.client_config()
  if has_011 then
    -- Only buffers with a filetype: vim.lsp.enable() after startup replays FileType for every
    -- buffer, the empty [No Name] one included. on_dir(nil): no root, single-file mode.
    cfg.root_dir = function(bufnr, on_dir)
      if vim.bo[bufnr].filetype ~= '' and launch.check(M.cmd()) then
        on_dir(nil)
      end
    end
    vim.lsp.config(M.name, cfg)
    -- vim.lsp.enable() would only write a missing executable to lsp.log, for every buffer.
    vim.lsp.enable(M.name, launch.check(cfg.cmd))
  else
    -- 0.10: start on FileType ourselves; reuse the one client for every buffer.
    vim.api.nvim_create_autocmd('FileType', {
      group = group,
      pattern = opts and opts.filetypes or '*',
      callback = function(args)
        if vim.bo[args.buf].buftype == '' and launch.check(M.cmd()) then
          vim.lsp.start(M.client_config(), { bufnr = args.buf })
        end
      end,
    })
  end
  return M
end

--- setup() with defaults unless the user already called it (commands use this).
function M.ensure_setup()
  if not M.config then
    M.setup({})
  end
end

-- Commands --------------------------------------------------------------------------------------

--- The request kinds (chat, complete, inline) that `backend` serves first, from an
--- `mlxd/models` result: its `defaults` maps each kind to a backend name.
function M.default_kinds(result, backend)
  local kinds = {}
  for kind, b in vim.spairs(result.defaults or {}) do
    if b == backend then
      kinds[#kinds + 1] = kind
    end
  end
  return kinds
end

--- :MlxdModels: list the models the daemon knows and the defaults per request kind.
---@param cb? fun(result: table?, err: table|string?)
function M.models(cb)
  M.with_client(function(client, err)
    if not client then -- with_client said why
      return cb and cb(nil, err)
    end
    M.request(client, 'mlxd/models', vim.empty_dict(), function(rerr, result)
      if rerr then
        vim.notify('mlxd/models: ' .. tostring(rerr.message or rerr), vim.log.levels.ERROR)
        return cb and cb(nil, rerr)
      end
      if not cb then
        local chunks = { { 'mlxd models\n', 'Title' } }
        for _, m in ipairs(result.models or {}) do
          local tags = M.default_kinds(result, m.backend)
          chunks[#chunks + 1] = {
            ('  %s  [%s]%s%s\n'):format(
              m.name,
              m.backend,
              m.loaded and '  loaded' or '',
              #tags > 0 and ('  default: ' .. table.concat(tags, ', ')) or ''
            ),
          }
        end
        vim.api.nvim_echo(chunks, true, {})
      end
      return cb and cb(result)
    end)
  end)
end

--- The backends the running daemon serves (from its last mlxd/status), sorted; {} when none
--- runs. For :MlxdSetKey's completion.
---@return string[]
function M.backend_names()
  local st = M.client() and M.state.status
  local names = vim.tbl_keys(st and st.backends or {})
  table.sort(names)
  return names
end

-- Hand `key` for `backend` to the daemon; the LSP log stays free of it.
local function send_key(client, backend, persist, key, cb)
  -- The LSP log would record the key at debug level: keep it out for this one message.
  local log = vim.lsp.log
  local level = log.get_level()
  if level < vim.log.levels.WARN then
    log.set_level(vim.log.levels.WARN)
  end
  local params = { backend = backend, apiKey = key, persist = persist or false }
  M.request(client, 'mlxd/setApiKey', params, function(rerr)
    if rerr then
      local msg = tostring(rerr.message or rerr)
      vim.notify('mlxd: key for ' .. backend .. ' refused: ' .. msg, vim.log.levels.ERROR)
      return cb and cb(false, msg)
    end
    vim.notify(('mlxd: key for %s set%s'):format(backend, persist and ' and stored' or ''))
    return cb and cb(true)
  end)
  log.set_level(level)
end

--- :MlxdSetKey {backend}: check the name against the daemon's backends (mlxd/models), then
--- read a key without echo and hand it to the daemon. An unknown name is refused before the
--- prompt, with the configured names.
---@param backend string
---@param persist? boolean store it in the OS keyring too
---@param key? string the key (prompted for when nil)
---@param cb? fun(ok: boolean, err: string?)
function M.set_key(backend, persist, key, cb)
  if not backend or backend == '' then
    vim.notify('mlxd: :MlxdSetKey needs a backend name', vim.log.levels.ERROR)
    return cb and cb(false, 'no backend')
  end
  M.models(function(result, err)
    if not result then -- models() said why
      return cb and cb(false, err)
    end
    local names = vim.tbl_map(function(m)
      return m.backend
    end, result.models or {})
    if not vim.tbl_contains(names, backend) then
      local msg = ('no backend named %q; configured: %s'):format(backend, table.concat(names, ', '))
      vim.notify('mlxd: ' .. msg, vim.log.levels.ERROR)
      return cb and cb(false, msg)
    end
    key = key or vim.fn.inputsecret(('API key for %s: '):format(backend))
    if key == '' then
      return cb and cb(false, 'empty key')
    end
    send_key(M.client(), backend, persist, key, cb)
    key = nil
  end)
end

return M
