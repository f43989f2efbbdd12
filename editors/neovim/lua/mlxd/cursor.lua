-- Where the cursor rests, told to the daemon (`mlxd/didMoveCursor`, docs/protocol.md) so that
-- it prefills the prompt there before the user types: the first ghost text in the middle of a
-- file is then not a cold prefill. Debounced (trailing): a burst of moves costs one
-- notification, at the position where the cursor came to rest, and none when that is where the
-- last one for the buffer went. Only to a daemon that lists the method (an older shared one
-- does not), and nothing while ghost text is off (setup's ghost.enabled, :MlxdToggle,
-- ghost.filetypes).
local M = {}

local api = vim.api
local uv = vim.uv or vim.loop

M.METHOD = 'mlxd/didMoveCursor'
--- How long the cursor must stay put before its position is sent (ms).
M.REST_MS = 150

---@class mlxd.cursor.State
---@field client_id integer
---@field timer uv.uv_timer_t
---@field sent string? "line:character" last sent for this buffer

---@type table<integer, mlxd.cursor.State>
local states = {}

--- Does the server's initialize result list `method` in capabilities.experimental.mlxd.methods?
function M.advertised(client, method)
  local caps = client.server_capabilities or {}
  local mlxd = type(caps.experimental) == 'table' and caps.experimental.mlxd
  local methods = type(mlxd) == 'table' and mlxd.methods
  return type(methods) == 'table' and vim.tbl_contains(methods, method or M.METHOD)
end

--- Is ghost text on in `bufnr` (setup's ghost.enabled, :MlxdToggle, ghost.filetypes)?
function M.ghost_on(bufnr)
  local root = require('mlxd')
  local opts = root.config or root.defaults
  return (opts.ghost or {}).enabled ~= false and require('mlxd.toggle').enabled(bufnr)
end

-- The cursor came to rest in `bufnr`: send its position unless it is where the last one went.
local function rest(bufnr)
  local st = states[bufnr]
  if not st or api.nvim_get_current_buf() ~= bufnr or not M.ghost_on(bufnr) then
    return -- the cursor left the buffer (its new one reports), or ghost text is off
  end
  local client = vim.lsp.get_client_by_id(st.client_id)
  if not client or (client.is_stopped and client:is_stopped()) then
    return
  end
  -- The position in the client's offset encoding, as the inline requests send it.
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.position = M.insert_position(client, params.position)
  local key = ('%d:%d'):format(params.position.line, params.position.character)
  if key == st.sent then
    return
  end
  st.sent = key
  require('mlxd').notify(client, M.METHOD, { textDocument = params.textDocument, position = params.position })
end

--- Where typing will start from the cursor at `position` (the current window's): in normal
--- mode on a line's last character, the end of that line (`a` and `A` insert after it, where
--- ghost text is asked; a block cursor elsewhere is where `i` inserts); else `position`.
function M.insert_position(client, position)
  if api.nvim_get_mode().mode ~= 'n' then
    return position
  end
  local row, col = unpack(api.nvim_win_get_cursor(0))
  local line = api.nvim_get_current_line()
  local char = vim.fn.matchstr(line, '\\%' .. (col + 1) .. 'c.')
  if #line == 0 or col + #char < #line then
    return position
  end
  local eol = vim.lsp.util.character_offset(0, row - 1, #line, client.offset_encoding)
  return { line = position.line, character = eol }
end

--- The cursor moved in `bufnr` (or the buffer was entered): (re)start its rest timer.
function M.moved(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  st.timer:stop()
  st.timer:start(
    M.REST_MS,
    0,
    vim.schedule_wrap(function()
      rest(bufnr)
    end)
  )
end

--- Report the cursor of `bufnr` to `client` (on LspAttach): nothing when the server does not
--- list the method or setup() turned ghost text off.
function M.attach(bufnr, client)
  local root = require('mlxd')
  local opts = root.config or root.defaults
  if states[bufnr] and states[bufnr].client_id ~= client.id then
    M.detach(bufnr) -- a restarted daemon's client: a new session, told nothing yet
  end
  if states[bufnr] or (opts.ghost or {}).enabled == false or not M.advertised(client) then
    return
  end
  states[bufnr] = { client_id = client.id, timer = assert(uv.new_timer()) }
  local group = api.nvim_create_augroup('mlxd.cursor.' .. bufnr, { clear = true })
  api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI', 'BufEnter' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.moved(bufnr)
    end,
  })
  api.nvim_create_autocmd('BufWipeout', {
    group = group,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
  M.moved(bufnr) -- opening the file put the cursor somewhere
end

--- Stop reporting for `bufnr` (LspDetach, wipeout): its timer and autocommands go.
function M.detach(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  states[bufnr] = nil
  st.timer:stop()
  st.timer:close()
  pcall(api.nvim_del_augroup_by_name, 'mlxd.cursor.' .. bufnr)
end

--- Buffers reporting now (for tests and :checkhealth).
function M.buffers()
  return vim.tbl_keys(states)
end

return M
