-- A daemon that stops on its own (killed, crashed) is started again for the buffers it served,
-- as VS Code's language client does: at most MAX times within WINDOW_MS, then it stays stopped
-- and says so. Neovim's own client never restarts a server, and the old plugin only showed
-- `mlxd: stopped (0)`: no ghost text, and a chat answer in flight "streaming" for ever.
-- :MlxdRestart stops and starts it on request (after an upgrade, or after giving up).
local M = {}

local uv = vim.uv or vim.loop

M.MAX = 3
M.WINDOW_MS = 180000

local crashes = {} -- uv.now() of recent unexpected exits
local stopping = {} -- client id -> true: stopped by :MlxdRestart, not a crash

local function mlxd()
  return require('mlxd')
end

local function stop(client, force)
  if vim.fn.has('nvim-0.11') == 1 then
    client:stop(force)
  else
    client.stop(force)
  end
end

--- Why an exit was unexpected ("signal 9", "exit code 1"), or nil for a clean stop. The same
--- rule as Neovim's own warning: SIGTERM is a requested stop.
---@param code integer
---@param signal integer
---@return string?
function M.reason(code, signal)
  if code ~= 0 then
    return ('exit code %d'):format(code)
  end
  if signal ~= 0 and signal ~= 15 then
    return ('signal %d'):format(signal)
  end
end

--- The buffers a freshly started daemon should serve: loaded file buffers with a filetype that
--- setup()'s `filetypes` accepts (what vim.lsp.enable() would attach).
---@return integer[]
function M.file_buffers()
  local fts = (mlxd().config or mlxd().defaults).filetypes
  local out = {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    local ft = vim.bo[b].filetype
    if
      vim.api.nvim_buf_is_loaded(b)
      and vim.bo[b].buftype == ''
      and ft ~= ''
      and (fts == nil or vim.tbl_contains(fts, ft))
    then
      out[#out + 1] = b
    end
  end
  return out
end

--- Start one daemon and attach `bufs` to it (buffers no longer valid are skipped).
---@param bufs integer[]
function M.start(bufs)
  local cfg = mlxd().client_config()
  for _, b in ipairs(bufs) do
    if vim.api.nvim_buf_is_valid(b) and vim.api.nvim_buf_is_loaded(b) then
      vim.lsp.start(cfg, { bufnr = b })
    end
  end
end

--- The client's on_exit (scheduled, so after Neovim dropped the client). `bufs`: the buffers
--- it served. Starts it again after an unexpected exit, within the limit.
---@param client_id integer
---@param why string? M.reason() of the exit
---@param initialized boolean whether `initialize` had succeeded (an earlier exit is launch.lua's)
---@param bufs integer[]
function M.on_exit(client_id, why, initialized, bufs)
  local requested = stopping[client_id]
  stopping[client_id] = nil
  if requested or not why or not initialized or vim.v.exiting ~= vim.NIL then
    return
  end
  local now = uv.now()
  crashes = vim.tbl_filter(function(t)
    return now - t < M.WINDOW_MS
  end, crashes)
  crashes[#crashes + 1] = now
  local launch = require('mlxd.launch')
  if #crashes > M.MAX then
    launch.give_up(
      ('mlxd: the daemon stopped unexpectedly %d times in %d minutes (last: %s); not starting '):format(
        #crashes,
        M.WINDOW_MS / 60000,
        why
      ) .. 'it again. Its output is in :LspLog; :MlxdRestart starts it.'
    )
    return
  end
  vim.notify(
    ('mlxd: the daemon stopped unexpectedly (%s); starting it again. Its output is in :LspLog.'):format(
      why
    ),
    vim.log.levels.WARN
  )
  M.start(bufs)
end

--- :MlxdRestart: stop the daemon (if one runs), then start it for every buffer it serves.
---@param done? fun() called once the new daemon was started (not yet initialized)
function M.command(done)
  require('mlxd.launch').reset()
  crashes = {}
  local bufs = {}
  local clients = vim.lsp.get_clients({ name = mlxd().name })
  for _, c in ipairs(clients) do
    vim.list_extend(bufs, vim.tbl_keys(c.attached_buffers))
    stopping[c.id] = true
    stop(c)
  end
  if #bufs == 0 then
    bufs = M.file_buffers()
  end
  -- Wait until Neovim dropped the old client: its LspDetach would undo the new attach.
  local deadline = uv.now() + 5000
  local forced = false
  local timer = assert(uv.new_timer())
  timer:start(
    20,
    50,
    vim.schedule_wrap(function()
      if timer:is_closing() then
        return
      end
      local left = vim.lsp.get_clients({ name = mlxd().name })
      if #left > 0 and uv.now() < deadline then
        return
      end
      if #left > 0 and not forced then
        forced, deadline = true, uv.now() + 2000
        for _, c in ipairs(left) do
          stop(c, true)
        end
        return
      end
      timer:stop()
      timer:close()
      M.start(bufs)
      if done then
        done()
      end
    end)
  )
end

return M
