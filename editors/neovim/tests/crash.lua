-- A daemon that stops on its own is started again (new-user pass of issue #18: after a SIGKILL
-- the statusline said `mlxd: stopped (0)`, nothing said why, ghost text never came back, and a
-- chat answer in flight stayed "streaming" for ever).
--  A. SIGKILL while a chat answer streams: the answer ends with an error, a warning says why,
--     a new daemon serves the buffer again.
--  B. Killed more than restart.MAX times within its window: it stays stopped, says so once,
--     and the statusline names :MlxdRestart.
--  C. :MlxdRestart starts it again; run on a working daemon it replaces it.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

-- The daemon processes this Neovim started (children running mlxd).
local function daemons()
  local pids = {}
  for _, pid in ipairs(api.nvim_get_proc_children(vim.fn.getpid())) do
    local f = io.open(('/proc/%d/cmdline'):format(pid))
    local cmdline = f and f:read('*a') or ''
    if f then
      f:close()
    end
    if cmdline:find('mlxd', 1, true) then
      pids[#pids + 1] = pid
    end
  end
  return pids
end

H.run(function()
  local r = H.result
  local notes = {}
  local notify = vim.notify
  vim.notify = function(msg, level, ...)
    notes[#notes + 1] = { msg = tostring(msg), level = level }
    return notify(msg, level, ...)
  end
  local mlxd = H.setup({ chat = { max_tokens = 4000 } })
  local has_restart, restart = pcall(require, 'mlxd.restart')
  local MAX = has_restart and restart.MAX or 3
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  local client = H.wait_ready(buf)

  -- A new client (not `old`) attached to buf, initialized and ready.
  local function served_again(old, what)
    return H.wait(function()
      local c = mlxd.client()
      local st = mlxd.state.status
      return c
        and c.id ~= old.id
        and c.initialized
        and c.attached_buffers[buf]
        and st
        and st.state == 'ready'
        and vim.b[buf].mlxd_ghost
        and c
    end, 30000, what)
  end

  -- A. Killed mid-answer.
  local chat = require('mlxd.chat')
  chat.send('Write a very long story.')
  H.wait(function()
    local last = chat.last()
    return last and last.deltas > 0
  end, 20000, 'the first streamed piece')
  local pids = daemons()
  r.pids_before = pids
  vim.uv.kill(pids[1], 'sigkill')
  H.wait(function()
    return chat.last().done
  end, 10000, 'the chat answer to end')
  local last = chat.last()
  r.chat_err = last.err and last.err.message
  r.chat_text_kept = last.text ~= ''
  r.status_after_kill = mlxd.status()
  local c2 = served_again(client, 'a new daemon after the kill')
  r.pids_after = daemons()
  r.warned = vim.tbl_map(function(n)
    return n.msg
  end, notes)

  -- B. Killed again and again: restart.MAX restarts within the window, then it stays stopped.
  local c = c2
  for i = 2, MAX do
    vim.uv.kill(daemons()[1], 'sigkill')
    c = served_again(c, ('a new daemon after kill %d'):format(i))
  end
  local before = #notes
  vim.uv.kill(daemons()[1], 'sigkill')
  H.wait(function()
    return mlxd.client() == nil
  end, 10000, 'the last client to go')
  H.sleep(1500) -- a restart would have been started by now
  r.client_after_limit = mlxd.client() ~= nil
  r.daemons_after_limit = #daemons()
  r.status_after_limit = mlxd.status()
  r.notes_after_limit = vim.tbl_map(function(n)
    return { msg = n.msg, level = n.level }
  end, vim.list_slice(notes, before + 1))
  -- Opening another file does not start it either (it said it would stay stopped).
  vim.cmd.edit(vim.fs.joinpath(vim.fs.dirname(file), 'other.py'))
  H.sleep(1000)
  r.daemons_after_edit = #daemons()
  vim.cmd.buffer(buf)

  -- C. :MlxdRestart starts it; again on a running one replaces it.
  vim.cmd('MlxdRestart')
  local c3 = served_again(c, ':MlxdRestart after giving up')
  local p3 = daemons()
  r.status_after_restart = mlxd.status()
  vim.cmd('MlxdRestart')
  served_again(c3, ':MlxdRestart of a working daemon')
  H.wait(function()
    return #daemons() == 1 and daemons()[1] ~= p3[1]
  end, 10000, 'the old daemon to exit')
  r.replaced = true
  r.notes_all = vim.tbl_map(function(n)
    return n.msg
  end, notes)
  r.errmsg = vim.v.errmsg
end, 110000)
