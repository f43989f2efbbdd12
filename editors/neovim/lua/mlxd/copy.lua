-- Code the user yanks, told to the daemon (`mlxd/didCopy`, docs/protocol.md) so that inline
-- prompts can show it to the model as a neighbour snippet: a function yanked to write its
-- sibling, far above the cursor or in a file since closed (llama.vim's ring). A yank (`y`)
-- only: a delete or a change fills a register too, but with text the user is getting rid of.
-- Only to a daemon that lists the method, nothing while ghost text is off in the buffer, and
-- nothing for a yank of a word or two (the daemon keeps none under MIN_CHARS either).
local M = {}

local api = vim.api

M.METHOD = 'mlxd/didCopy'
--- Lines and characters of a yank sent at most (the daemon keeps its first 64 lines, 4,000
--- characters): a minified file is one long line.
M.MAX_LINES = 200
M.MAX_CHARS = 16000
--- Non-blank characters a yank needs to be sent (the daemon's inline/ring.py MIN_CHARS).
M.MIN_CHARS = 24

---@type table<integer, integer> buffer -> the client it reports to
local clients = {}

-- A yank in `bufnr` just filled a register (TextYankPost's v:event).
local function yanked(bufnr, event)
  local client = vim.lsp.get_client_by_id(clients[bufnr] or -1)
  if not client or (client.is_stopped and client:is_stopped()) then
    return
  end
  if event.operator ~= 'y' or not require('mlxd.cursor').ghost_on(bufnr) then
    return
  end
  local lines = vim.list_slice(event.regcontents or {}, 1, M.MAX_LINES)
  local text = vim.fn.strcharpart(table.concat(lines, '\n'), 0, M.MAX_CHARS)
  if #text:gsub('%s', '') < M.MIN_CHARS then
    return
  end
  local uri = vim.uri_from_bufnr(bufnr)
  require('mlxd').notify(client, M.METHOD, { textDocument = { uri = uri }, text = text })
end

--- Report the yanks in `bufnr` to `client` (on LspAttach): nothing when the server does not
--- list the method or setup() turned ghost text off.
function M.attach(bufnr, client)
  local root = require('mlxd')
  local opts = root.config or root.defaults
  if (opts.ghost or {}).enabled == false or not require('mlxd.cursor').advertised(client, M.METHOD) then
    return
  end
  clients[bufnr] = client.id -- a restarted daemon's client replaces the old one
  local group = api.nvim_create_augroup('mlxd.copy.' .. bufnr, { clear = true })
  api.nvim_create_autocmd('TextYankPost', {
    group = group,
    buffer = bufnr,
    callback = function()
      yanked(bufnr, vim.v.event)
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

--- Stop reporting for `bufnr` (LspDetach, wipeout).
function M.detach(bufnr)
  clients[bufnr] = nil
  pcall(api.nvim_del_augroup_by_name, 'mlxd.copy.' .. bufnr)
end

--- Buffers reporting now (for tests and :checkhealth).
function M.buffers()
  return vim.tbl_keys(clients)
end

return M
