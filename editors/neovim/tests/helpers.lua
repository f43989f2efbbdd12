-- Runner for the headless end-to-end scenarios (driven by tests/editors/test_neovim.py).
--
-- A scenario is a coroutine. wait()/sleep() yield back to Neovim's main loop, so keys sent with
-- nvim_input, LSP messages and timers are processed exactly as in an interactive session (real
-- insert mode, real TextChangedI). The scenario fills H.result; the runner writes it as JSON to
-- $MLXD_TEST_OUT and quits. An error or the deadline writes {error = ...} instead.
local H = {}

H.result = {}
local co ---@type thread
local finished = false

local function write(tbl)
  local f = assert(io.open(assert(os.getenv('MLXD_TEST_OUT'), 'MLXD_TEST_OUT not set'), 'w'))
  f:write(vim.json.encode(tbl))
  f:close()
end

local function finish(tbl)
  if finished then
    return
  end
  finished = true
  local ok, err = pcall(write, tbl)
  if not ok then
    io.stderr:write('mlxd test: cannot write result: ' .. tostring(err) .. '\n')
  end
  vim.schedule(function()
    vim.cmd('qall!')
  end)
end

local function step()
  if finished then
    return
  end
  local ok, err = coroutine.resume(co)
  if not ok then
    H.result.error = debug.traceback(co, err)
    finish(H.result)
  elseif coroutine.status(co) == 'dead' then
    finish(H.result)
  end
end

--- Yield to the main loop for `ms` milliseconds.
function H.sleep(ms)
  vim.defer_fn(step, ms)
  coroutine.yield()
end

--- Poll `cond` every 20 ms until it returns a truthy value (returned), or fail after timeout_ms.
function H.wait(cond, timeout_ms, what)
  local deadline = vim.uv.now() + (timeout_ms or 10000)
  while true do
    local v = cond()
    if v then
      return v
    end
    if vim.uv.now() > deadline then
      local msg = ('timed out after %d ms waiting for %s'):format(timeout_ms or 10000, what or '?')
      error(msg, 2)
    end
    H.sleep(20)
  end
end

--- Type `keys` (nvim_input notation) as a UI would: from a libuv callback, not from a scheduled
--- one, so that e.g. a mapped <C-c> reaches its mapping instead of interrupting.
function H.keys(keys)
  local timer = assert(vim.uv.new_timer())
  timer:start(0, 0, function()
    timer:close()
    vim.api.nvim_input(keys)
  end)
  H.sleep(10)
end

--- Fail the scenario with `msg` unless `v` is truthy.
function H.check(v, msg)
  if not v then
    error('check failed: ' .. msg, 2)
  end
  return v
end

--- Load the plugin as a user would (plugin/ is skipped with -u NONE) and call setup() with the
--- daemon command from $MLXD_TEST_CMD (a JSON list) merged with `opts`.
function H.setup(opts)
  vim.cmd('filetype on')
  vim.cmd.runtime('plugin/mlxd.lua')
  local cmd = vim.json.decode((assert(os.getenv('MLXD_TEST_CMD'), 'MLXD_TEST_CMD not set')))
  local mlxd = require('mlxd')
  mlxd.setup(vim.tbl_deep_extend('force', { cmd = cmd }, opts or {}))
  return mlxd
end

--- Wait until the mlxd client is attached to `bufnr`, initialized, and the daemon said "ready".
function H.wait_ready(bufnr, timeout_ms)
  local mlxd = require('mlxd')
  return H.wait(function()
    if mlxd.state.exited then
      error(('the daemon exited (%s)'):format(tostring(mlxd.state.exited)))
    end
    local c = mlxd.client()
    local st = mlxd.state.status
    return c
      and c.initialized
      and (bufnr == nil or c.attached_buffers[bufnr])
      and st
      and st.state == 'ready'
      and c
  end, timeout_ms or 20000, 'the daemon to be ready')
end

--- The daemon's `mlxd/stats` `inline` counters for this session (a failed request fails).
function H.inline_stats(client)
  local got
  require('mlxd').request(client, 'mlxd/stats', vim.empty_dict(), function(err, res)
    got = { err = err, res = res }
  end)
  H.wait(function()
    return got
  end, 10000, 'mlxd/stats')
  H.check(got.res, 'mlxd/stats answered: ' .. vim.inspect(got.err))
  return got.res.inline
end

--- The whole text of a buffer.
function H.text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), '\n')
end

--- Run `fn` as the scenario once startup is over; fail it after `timeout_ms`.
function H.run(fn, timeout_ms)
  co = coroutine.create(fn)
  vim.defer_fn(function()
    H.result.error = ('scenario deadline of %d ms passed'):format(timeout_ms)
    finish(H.result)
  end, timeout_ms)
  vim.schedule(step)
end

return H
