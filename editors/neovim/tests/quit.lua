-- :qa! while the daemon works on a chat ($MLXD_TEST_CASE): "streaming" (the answer is
-- arriving) or "prefill" (a long question on the slow model, no token yet: the MLX thread is
-- busy for many seconds).
-- The scenario ends (the runner writes the result and runs `qall!`) while the daemon is still
-- at it; the test then checks the daemon's process.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local case = assert(os.getenv('MLXD_TEST_CASE'), 'MLXD_TEST_CASE not set')

H.run(function()
  local r = H.result
  H.setup({ chat = { max_tokens = 4000, temperature = 0 } })
  local chat = require('mlxd.chat')
  local req
  if case == 'streaming' then
    vim.cmd('MlxdChat Write a very long story about a lighthouse.')
    req = H.wait(function()
      local q = chat.last()
      if q and q.done then
        error('the chat ended before the quit: ' .. vim.inspect(q.err or q.result))
      end
      return q and q.deltas >= 3 and q
    end, 20000, 'three streamed deltas')
  else
    req = chat.send(string.rep('def f(x):\n    return x + 1\n', 270))
    H.wait(function()
      return req.id
    end, 20000, 'the question to be sent')
    H.sleep(1500) -- the model is loaded and the prefill under way
  end
  -- The daemon is the child of this Neovim that runs `serve`.
  r.daemon_pids = {}
  for _, pid in ipairs(api.nvim_get_proc_children(vim.fn.getpid())) do
    local f = io.open(('/proc/%d/cmdline'):format(pid))
    local argv = f and f:read('*a') or ''
    if f then
      f:close()
    end
    if argv:find('\0serve\0', 1, true) then
      r.daemon_pids[#r.daemon_pids + 1] = pid
    end
  end
  r.busy = not req.done
  r.deltas = req.deltas
  r.err = req.err
end, 30000)
