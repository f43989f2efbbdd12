-- Insert-mode keys for ghost text. A key with nothing to act on does what it does without the
-- plugin: an unmapped ALT chord acts like <Esc> and the key (|i_META|), so `<M-l>` must not
-- type an "l" when no suggestion is shown (users press accept early while the model thinks).
local M = {}

M.descs = {
  accept = 'mlxd: accept suggestion',
  accept_word = 'mlxd: accept the next word of the suggestion',
  accept_line = 'mlxd: accept one line of the suggestion',
  dismiss = 'mlxd: dismiss suggestion',
  next = 'mlxd: next suggestion',
  prev = 'mlxd: previous suggestion',
  suggest = 'mlxd: suggest now',
}

--- What `lhs` does in insert mode without a mapping, as keys to feed: `<M-x>` / `<A-x>` is
--- `<Esc>x` (`<M-Right>` is `<Esc><Right>`); any other key is itself.
---@param lhs string
---@return string
function M.unmapped(lhs)
  local inner = lhs:match('^<[MmAa]%-(.+)>$')
  if not inner then
    return lhs
  end
  if #inner == 1 then
    return '<Esc>' .. (inner == '<' and '<lt>' or inner)
  end
  return '<Esc><' .. inner .. '>'
end

--- Map the configured keys in `bufnr`; `act(name)` runs an action and returns whether it did
--- something.
---@param bufnr integer
---@param keymaps table<string, string|false>
---@param act fun(name: string): boolean
function M.set(bufnr, keymaps, act)
  for action, desc in pairs(M.descs) do
    local lhs = keymaps[action]
    if lhs then
      local otherwise = M.unmapped(lhs)
      vim.keymap.set('i', lhs, function()
        if act(action) then
          return ''
        end
        return otherwise
      end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = desc })
    end
  end
end

return M
