-- Neovim 0.12's `vim.lsp.inline_completion`, made safe to type through.
--
-- The built-in keeps its current item after a keystroke that no longer matches it and redraws it
-- at its old range: typing `r` in front of a `"""Return` ghost shows `r""Return`, accepting gives
-- `"""Returnr`, and joining the item's line into the one above raises "Index out of bounds". It
-- also shows an answer that arrives after the user typed on. Here an item is only good for the
-- buffer text and cursor it was asked for, as in the plugin's own implementation (ghost.lua):
-- a stale answer is dropped, and any edit or cursor move drops the item before it is redrawn.
-- Its autocommands also fire for every attached buffer, so a key typed in one asked for all of
-- them; here only the current buffer asks.
-- The guard overrides methods on the per-buffer instance only (other buffers keep the built-in).
local M = {}

local api = vim.api

M.NS = 'nvim.lsp.inline_completion'

--- The built-in's per-buffer state, or nil (private API: nil when its shape changed).
local function completor(bufnr)
  local ok, cap = pcall(require, 'vim.lsp._capability')
  local proto = ok and type(cap) == 'table' and cap.all and cap.all.inline_completion
  return proto and proto.active and proto.active[bufnr], proto
end

-- Buffer text version + cursor, for the window showing `bufnr` when it is the current one.
local function key(bufnr)
  if api.nvim_get_current_buf() ~= bufnr then
    return nil
  end
  local cur = api.nvim_win_get_cursor(0)
  return ('%d:%d:%d'):format(api.nvim_buf_get_changedtick(bufnr), cur[1], cur[2])
end

-- Whether an answer still belongs to the buffer text and cursor it was asked for.
local function answer_is_current(bufnr, ctx)
  if api.nvim_get_current_buf() ~= bufnr then
    return false
  end
  -- ctx.version is the LSP document version the request was sent with (0 until the first
  -- edit, then b:changedtick as of the last change the client saw): compare like with like.
  if ctx.version and ctx.version ~= vim.lsp.util.buf_versions[bufnr] then
    return false
  end
  local pos = ctx.params and ctx.params.position
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if pos and client then
    local now = vim.lsp.util.make_position_params(0, client.offset_encoding).position
    return now.line == pos.line and now.character == pos.character
  end
  return true
end

-- Draw the item in our highlight: the built-in's ComplHint has only a GUI colour by default.
local function restyle(bufnr)
  local ns = api.nvim_get_namespaces()[M.NS]
  if not ns then
    return
  end
  for _, m in ipairs(api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })) do
    local d = m[4]
    local function recolor(chunks)
      for _, c in ipairs(chunks or {}) do
        if c[2] == 'ComplHint' then
          c[2] = 'MlxdGhost'
        end
      end
    end
    recolor(d.virt_text)
    for _, vl in ipairs(d.virt_lines or {}) do
      recolor(vl)
    end
    api.nvim_buf_set_extmark(bufnr, ns, m[2], m[3], {
      id = m[1],
      virt_text = d.virt_text,
      virt_text_pos = d.virt_text_pos,
      virt_lines = d.virt_lines,
      hl_mode = d.hl_mode,
    })
  end
end

-- Remember the line and cursor the current item is shown for (see follow()).
local function remember(c)
  c._mlxd_key = key(c.bufnr)
  if c._mlxd_key then
    local cur = api.nvim_win_get_cursor(0)
    c._mlxd_row, c._mlxd_col = cur[1] - 1, cur[2]
    c._mlxd_line = api.nvim_buf_get_lines(c.bufnr, c._mlxd_row, c._mlxd_row + 1, true)[1]
  end
end

-- The user typed the current item's next characters (the built-in hides it until its next
-- answer, >= 200 ms later): keep it, its range now ending after the typed text, so it stays on
-- screen trimmed and accept replaces exactly what is there. False for any other edit or move.
local function follow(c)
  local cur = c.current
  local text = cur and cur.insert_text
  if type(text) ~= 'string' or not c._mlxd_line or api.nvim_get_current_buf() ~= c.bufnr then
    return false -- a snippet item is left to the built-in's rules
  end
  local pos = api.nvim_win_get_cursor(0)
  local row, col, old_col = pos[1] - 1, pos[2], c._mlxd_col
  local r = cur.range
  if row ~= c._mlxd_row or (r and (r.start.row ~= row or r.end_.row ~= row)) then
    return false
  end
  local scol = r and r.start.col or old_col
  local typed_before = c._mlxd_line:sub(scol + 1, old_col)
  if scol > old_col or text:sub(1, #typed_before) ~= typed_before then
    return false
  end
  local line = api.nvim_buf_get_lines(c.bufnr, row, row + 1, true)[1]
  local rest = text:sub(#typed_before + 1)
  local k = require('mlxd.ghost').typed_through(c._mlxd_line, old_col, line, col, rest)
  if not k then
    return false
  end
  local ecol = math.max(r and r.end_.col or old_col, old_col) + k
  cur.range = vim.range(row, scol, row, ecol, { buf = c.bufnr })
  remember(c)
  return true
end

--- Install the guard on `bufnr`'s built-in instance (once). False when the built-in's internals
--- are not what this expects; the built-in then runs unguarded.
function M.guard(bufnr)
  local c, proto = completor(bufnr)
  local needs = { 'handler', 'show', 'select', 'request', 'automatic_request' }
  if not (c and proto and vim.iter(needs):all(function(n)
    return type(proto[n]) == 'function'
  end)) then
    return false
  end
  if c._mlxd_guarded then
    return true
  end
  c._mlxd_guarded = true
  c.handler = function(self, err, result, ctx)
    if not err and result and not answer_is_current(self.bufnr, ctx or {}) then
      return -- asked for text or a cursor that is gone
    end
    return proto.handler(self, err, result, ctx)
  end
  -- The built-in's InsertEnter/CursorMovedI autocommands are not buffer-local: a key typed in
  -- one buffer made every attached buffer ask, at the current window's cursor. Only the buffer
  -- being edited asks.
  c.automatic_request = function(self)
    if api.nvim_get_current_buf() == self.bufnr then
      return proto.automatic_request(self)
    end
  end
  c.request = function(self, kind)
    if api.nvim_get_current_buf() == self.bufnr then
      return proto.request(self, kind)
    end
  end
  c.select = function(self, index, show_index)
    remember(self)
    -- The built-in shows "(i/n)" only after cycling: show it as soon as there are several.
    return proto.select(self, index, show_index or self:count_items() > 1)
  end
  c.show = function(self, hint)
    if self.current and self._mlxd_key ~= key(self.bufnr) and not follow(self) then
      self.current = nil -- typed or moved since it was shown: never redraw it elsewhere
    end
    proto.show(self, hint)
    if self.current then
      restyle(self.bufnr)
    end
  end
  return true
end

--- Whether the built-in shows an item in `bufnr`.
function M.visible(bufnr)
  local ns = api.nvim_get_namespaces()[M.NS]
  return ns ~= nil and #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { limit = 1 }) > 0
end

--- The item the built-in would accept, or nil. An item left from before the last edit or
--- cursor move (keys typed faster than a redraw) is dropped here, so accept never uses it; one
--- whose next characters were typed is kept, trimmed, its range ending after them.
function M.current(bufnr)
  local c = completor(bufnr)
  if not (c and c.current) then
    return nil
  end
  if c._mlxd_guarded and c._mlxd_key ~= key(bufnr) then
    if follow(c) then
      c:show()
      return c.current
    end
    c.current = nil
    c:hide()
    return nil
  end
  return c.current
end

--- Hide the item until the next keystroke; false when none is shown.
function M.dismiss(bufnr)
  local c = completor(bufnr)
  if not (M.current(bufnr) and M.visible(bufnr)) then
    return false
  end
  c:abort() -- what the built-in does on InsertLeave: no public "dismiss" yet
  return true
end

--- Ask now (InlineCompletionTriggerKind.Invoked), without waiting for a keystroke.
function M.trigger(bufnr)
  local c = completor(bufnr)
  if not (c and c.request) then
    return false
  end
  c:request(1)
  return true
end

--- Number of items of the last answer (all clients), or 0.
function M.count(bufnr)
  local c = completor(bufnr)
  return (c and c.count_items) and c:count_items() or 0
end

return M
