-- A statusline component. `set statusline+=` is no good: 0.11's default 'statusline' is empty
-- (appending replaces the built-in one) and 0.12's ends with the ruler (appending glues onto it:
-- "Topmlxd: ready"). with_default() puts the component into the statusline in use instead.
local M = {}

--- The daemon state ("mlxd: ready | local", "mlxd: loading 40%", ...), "" when not started.
function M.text()
  local ok, mlxd = pcall(require, 'mlxd')
  return ok and mlxd.status() or ''
end

--- A 'statusline' item for the state, followed by a space, hidden while the text is empty.
M.item = "%(%{v:lua.require'mlxd.statusline'.text()} %)"

-- What Neovim draws when 'statusline' is empty (|status-line|, the ruler on the right).
M.BUILTIN = '%<%f %h%w%m%r%=%-14.(%l,%c%V%) %P'

--- `statusline` (default: the global 'statusline', or the built-in one when it is empty) with
--- the component inserted where the right-aligned part starts (after the first `%=`), so the
--- ruler and the rest stay as they were. Use: `vim.o.statusline = require('mlxd.statusline').with_default()`.
---@param statusline? string
---@return string
function M.with_default(statusline)
  local s = statusline or vim.go.statusline
  if s == '' then
    s = M.BUILTIN
  end
  if s:find(M.item, 1, true) then
    return s -- already there (setup ran twice)
  end
  local at = s:find('%=', 1, true)
  if not at then
    return s .. '%=' .. M.item
  end
  return s:sub(1, at + 1) .. M.item .. s:sub(at + 2)
end

return M
