-- :MlxdToggle: ghost text on/off for one buffer (b:mlxd_ghost_enabled) or everywhere
-- (g:mlxd_ghost_enabled). A buffer's own setting wins over the global one, which wins over
-- setup()'s per-filetype `ghost.filetypes` (prose and commit messages off, as in VS Code).
local M = {}

--- Whether ghost text is on in `bufnr` (0: current).
function M.enabled(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local b = vim.b[bufnr].mlxd_ghost_enabled
  if b ~= nil then
    return b
  end
  if vim.g.mlxd_ghost_enabled == false then
    return false
  end
  local mlxd = require('mlxd')
  local fts = ((mlxd.config or mlxd.defaults).ghost or {}).filetypes or {}
  local on = fts[vim.bo[bufnr].filetype]
  if on == nil then
    on = fts['*']
  end
  return on ~= false
end

-- Apply the current setting to a buffer: the built-in is switched with its own enable(); the
-- plugin's implementation checks enabled() on every keystroke.
local function apply(bufnr)
  local on = M.enabled(bufnr)
  local impl = vim.b[bufnr].mlxd_ghost
  if impl == 'native' then
    vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
    if on then
      require('mlxd.native').guard(bufnr)
    end
  elseif impl == 'fallback' and not on then
    require('mlxd.ghost').clear(bufnr)
  end
end

--- Turn ghost text on/off (`on` nil: flip) in the current buffer, or everywhere with `global`
--- (which also drops the buffers' own settings). Returns the new state.
---@param opts? {global?: boolean, on?: boolean}
---@return boolean
function M.toggle(opts)
  opts = opts or {}
  local cur = vim.api.nvim_get_current_buf()
  local on = opts.on
  if on == nil then
    on = not M.enabled(cur)
  end
  if opts.global then
    vim.g.mlxd_ghost_enabled = on
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      vim.b[b].mlxd_ghost_enabled = nil
    end
  else
    vim.b[cur].mlxd_ghost_enabled = on
  end
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.b[b].mlxd_ghost then
      apply(b)
    end
  end
  return on
end

--- A ready-made mapping target: toggle and say what happened.
function M.command(args)
  local on = M.toggle({ global = args.bang })
  vim.notify(('mlxd: ghost text %s%s'):format(on and 'on' or 'off', args.bang and ' everywhere' or ' in this buffer'))
end

return M
