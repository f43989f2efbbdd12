-- Fallback ghost text for Neovim 0.10/0.11 (and on 0.12 when forced): a debounced
-- `textDocument/inlineCompletion` request, shown as extmark virtual text at the cursor,
-- cancelled by the next keystroke or by leaving insert mode.
local M = {}

local api = vim.api
local uv = vim.uv or vim.loop
local METHOD = 'textDocument/inlineCompletion'
local AUTOMATIC = 2 -- InlineCompletionTriggerKind.Automatic

M.ns = api.nvim_create_namespace('mlxd.ghost')

---@class mlxd.ghost.Item
---@field text string the whole insertText
---@field rest string the part not typed yet (what is shown)
---@field range integer[] {srow, scol, erow, ecol}: 0-based bytes, end exclusive

---@class mlxd.ghost.State
---@field client_id integer
---@field debounce integer
---@field timer uv.uv_timer_t
---@field req_id integer?
---@field key string? buffer tick + cursor the shown items belong to
---@field items mlxd.ghost.Item[]?
---@field index integer
---@field row integer? the cursor row (0-based) the items were shown at, and its
---@field col integer? byte column, and
---@field line string? that line's text then (for typing through)

---@type table<integer, mlxd.ghost.State>
local states = {}

local function mlxd()
  return require('mlxd')
end

--- LSP column (in the client's position encoding) to a byte column of `line`.
function M.byte_col(line, col, encoding)
  if encoding == 'utf-8' then
    return math.min(col, #line)
  end
  local units, i = 0, 1
  while i <= #line and units < col do
    local b = line:byte(i)
    local len = b >= 0xF0 and 4 or b >= 0xE0 and 3 or b >= 0xC0 and 2 or 1
    units = units + ((encoding == 'utf-16' and len == 4) and 2 or 1)
    i = i + len
  end
  return i - 1
end

--- How many characters of the shown `rest` were typed at the cursor since `old_line` was the
--- line and `old_col` the cursor's byte column; nil unless exactly that happened: the cursor
--- moved right by k on the same line, the line is the old one with rest's first k characters
--- inserted at the old cursor, and some of `rest` is left. Typing through a suggestion keeps
--- the rest of it on screen (trimmed) instead of dropping it until the next answer.
---@return integer?
function M.typed_through(old_line, old_col, new_line, new_col, rest)
  local k = new_col - old_col
  if k <= 0 or k >= #rest then
    return nil
  end
  local typed = new_line:sub(old_col + 1, new_col)
  if typed ~= rest:sub(1, k) then
    return nil
  end
  if new_line ~= old_line:sub(1, old_col) .. typed .. old_line:sub(old_col + 1) then
    return nil
  end
  return k
end

local function cursor_key(bufnr)
  local cur = api.nvim_win_get_cursor(0)
  return ('%d:%d:%d'):format(api.nvim_buf_get_changedtick(bufnr), cur[1], cur[2])
end

local function in_insert(bufnr)
  return api.nvim_get_current_buf() == bufnr and api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

local function cancel_request(st)
  if st.req_id then
    local client = vim.lsp.get_client_by_id(st.client_id)
    if client then
      mlxd().cancel_request(client, st.req_id)
    end
    st.req_id = nil
  end
end

local function hide(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Drop the suggestion and any request in flight.
function M.clear(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  st.timer:stop()
  cancel_request(st)
  st.items, st.key, st.index, st.line = nil, nil, 1, nil
  hide(bufnr)
end

local function show(bufnr)
  local st = states[bufnr]
  hide(bufnr)
  local item = st and st.items and st.items[st.index]
  if not item then
    return
  end
  local lines = vim.split(item.rest, '\n', { plain = true })
  local virt_text = { { lines[1], 'MlxdGhost' } }
  if #st.items > 1 then
    virt_text[2] = { (' (%d/%d)'):format(st.index, #st.items), 'NonText' }
  end
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], 'MlxdGhost' } }
  end
  local cur = api.nvim_win_get_cursor(0)
  api.nvim_buf_set_extmark(bufnr, M.ns, cur[1] - 1, cur[2], {
    virt_text = virt_text,
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
end

-- Turn LSP items into what can be shown at the cursor: the part of insertText after what the
-- user already typed inside the item's range. Items that do not extend the text are dropped.
local function prepare(bufnr, raw, encoding)
  local cur = api.nvim_win_get_cursor(0)
  local crow, ccol = cur[1] - 1, cur[2]
  local line = api.nvim_buf_get_lines(bufnr, crow, crow + 1, true)[1]
  local out = {}
  for _, it in ipairs(raw) do
    local text = type(it.insertText) == 'table' and it.insertText.value or it.insertText
    if type(text) == 'string' then
      local range = { crow, ccol, crow, ccol }
      local rest = text
      if it.range then
        local s, e = it.range.start, it.range['end']
        if s.line == crow and e.line == crow then
          local scol = M.byte_col(line, s.character, encoding)
          local ecol = M.byte_col(line, e.character, encoding)
          local typed = line:sub(scol + 1, ccol)
          if scol <= ccol and text:sub(1, #typed) == typed then
            range = { crow, scol, crow, math.max(ecol, ccol) }
            rest = text:sub(#typed + 1)
          else
            rest = ''
          end
        else
          rest = '' -- multi-line ranges are not shown by this small implementation
        end
      end
      if rest ~= '' then
        out[#out + 1] = { text = text, rest = rest, range = range }
      end
    end
  end
  return out
end

local INVOKED = 1 -- InlineCompletionTriggerKind.Invoked

local function request(bufnr, kind)
  local st = states[bufnr]
  if not st or not in_insert(bufnr) then
    return
  end
  local client = vim.lsp.get_client_by_id(st.client_id)
  if not client then
    return
  end
  cancel_request(st)
  local key = cursor_key(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or AUTOMATIC }
  local id
  id = mlxd().request(client, METHOD, params, function(err, result)
    if states[bufnr] ~= st or st.req_id ~= id then
      return -- superseded
    end
    st.req_id = nil
    if err or not result or not in_insert(bufnr) or cursor_key(bufnr) ~= key then
      return
    end
    local items = prepare(bufnr, result.items or result, client.offset_encoding)
    if #items == 0 then
      return
    end
    st.items, st.index, st.key = items, 1, key
    local cur = api.nvim_win_get_cursor(0)
    st.row, st.col = cur[1] - 1, cur[2]
    st.line = api.nvim_buf_get_lines(bufnr, st.row, st.row + 1, true)[1]
    show(bufnr)
  end, bufnr)
  st.req_id = id
end

-- The user typed the shown item's next characters: keep the items the typed text continues,
-- trimmed, with their ranges' ends moved past the typed text (so accept replaces exactly what is
-- there now). False (nothing changed) for any other edit or move.
local function follow(bufnr, st)
  local item = st.items and st.items[st.index]
  if not (item and st.line) or api.nvim_get_current_buf() ~= bufnr then
    return false
  end
  local cur = api.nvim_win_get_cursor(0)
  if cur[1] - 1 ~= st.row then
    return false
  end
  local line = api.nvim_buf_get_lines(bufnr, st.row, st.row + 1, true)[1]
  local k = M.typed_through(st.line, st.col, line, cur[2], item.rest)
  if not k then
    return false
  end
  local typed, kept, index = item.rest:sub(1, k), {}, 1
  for i, it in ipairs(st.items) do
    if it.rest:sub(1, k) == typed and #it.rest > k then
      local r = it.range
      local range = { r[1], r[2], r[3], r[4] + k }
      kept[#kept + 1] = { text = it.text, rest = it.rest:sub(k + 1), range = range }
      if i == st.index then
        index = #kept
      end
    end
  end
  st.items, st.index, st.key = kept, index, cursor_key(bufnr)
  st.line, st.col = line, cur[2]
  show(bufnr)
  return true
end

-- Each keystroke restarts the debounce timer and drops what was shown (unless it typed the
-- shown item's next characters: then the rest stays on screen).
local function on_change(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  if st.items and st.key == cursor_key(bufnr) then
    return -- nothing moved (e.g. CursorMovedI right after TextChangedI)
  end
  if follow(bufnr, st) then
    return
  end
  M.clear(bufnr)
  if not require('mlxd.toggle').enabled(bufnr) then
    return -- :MlxdToggle
  end
  st.timer:start(
    st.debounce,
    0,
    vim.schedule_wrap(function()
      request(bufnr)
    end)
  )
end

--- Start ghost text in `bufnr` for the client `client_id`.
function M.attach(bufnr, client_id, debounce_ms)
  if states[bufnr] then
    return
  end
  states[bufnr] = {
    client_id = client_id,
    debounce = debounce_ms or 200,
    timer = assert(uv.new_timer()),
    index = 1,
  }
  local group = api.nvim_create_augroup('mlxd.ghost.' .. bufnr, { clear = true })
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'TextChangedP', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_change(bufnr)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd('BufWipeout', {
    group = group,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
end

function M.detach(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  M.clear(bufnr)
  st.timer:close()
  states[bufnr] = nil
  pcall(api.nvim_del_augroup_by_name, 'mlxd.ghost.' .. bufnr)
end

--- The suggestion shown in `bufnr`, or nil. One shown before the last edit or cursor move (keys
--- typed faster than a redraw, so no autocommand ran yet) is dropped instead, unless the edit
--- typed its next characters (then the trimmed rest).
function M.current(bufnr)
  local st = states[bufnr]
  local item = st and st.items and st.items[st.index]
  if item and st.key ~= cursor_key(bufnr) then
    if follow(bufnr, st) then
      return st.items[st.index]
    end
    M.clear(bufnr)
    return nil
  end
  return item
end

local function accept_with(bufnr, pick)
  local item = M.current(bufnr)
  if not item then
    return false
  end
  M.clear(bufnr)
  -- Deferred: accept runs inside an <expr> mapping, where the buffer cannot change.
  vim.schedule(function()
    if api.nvim_buf_is_valid(bufnr) then
      pick(item)
    end
  end)
  return true
end

--- Insert the whole suggestion (replacing its range).
function M.accept(bufnr)
  return accept_with(bufnr, function(item)
    local r = item.range
    mlxd().apply_text(bufnr, r[1], r[2], r[3], r[4], item.text)
  end)
end

--- Insert the next word of the suggestion at the cursor.
function M.accept_word(bufnr)
  return accept_with(bufnr, function(item)
    local cur = api.nvim_win_get_cursor(0)
    local row, col = cur[1] - 1, cur[2]
    mlxd().apply_text(bufnr, row, col, row, col, mlxd().first_word(item.rest))
  end)
end

--- Ask now, without the debounce (the "suggest" key).
function M.suggest(bufnr)
  local st = states[bufnr]
  if not (st and in_insert(bufnr) and require('mlxd.toggle').enabled(bufnr)) then
    return false
  end
  M.clear(bufnr)
  request(bufnr, INVOKED)
  return true
end

--- Insert the next line of the suggestion at the cursor.
function M.accept_line(bufnr)
  return accept_with(bufnr, function(item)
    local cur = api.nvim_win_get_cursor(0)
    local row, col = cur[1] - 1, cur[2]
    mlxd().apply_text(bufnr, row, col, row, col, mlxd().first_line(item.rest))
  end)
end

--- Hide the suggestion; the next keystroke asks again.
function M.dismiss(bufnr)
  if not M.current(bufnr) then
    return false
  end
  local st = states[bufnr]
  st.timer:stop()
  cancel_request(st)
  hide(bufnr)
  st.items = {} -- keeps `key`, so CursorMovedI without a change does not ask again
  return true
end

local function cycle(bufnr, step)
  local st = states[bufnr]
  if not (M.current(bufnr) and #st.items > 0) then
    return false
  end
  st.index = (st.index - 1 + step) % #st.items + 1
  show(bufnr)
  return true
end

function M.next(bufnr)
  return cycle(bufnr, 1)
end

function M.prev(bufnr)
  return cycle(bufnr, -1)
end

return M
