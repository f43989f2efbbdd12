-- Inline suggestions (ghost text): which implementation a buffer uses (0.12's built-in with
-- the guard of native.lua, or ghost.lua), the actions behind the keys, and enabling per buffer.
-- require('mlxd') re-exports the public functions (accept, rest, ghost_text, ...).
local M = {}

local native = require('mlxd.native')

local function cfg()
  local root = require('mlxd')
  return root.config or root.defaults
end


local function native_available()
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.enable ~= nil
end

--- "native" or "fallback": the implementation setup() picks for this Neovim and these options.
function M.ghost_impl()
  local want = (cfg().ghost or {}).implementation or 'auto'
  if want == 'fallback' then
    return 'fallback'
  end
  if native_available() then
    return 'native'
  end
  if want == 'native' then
    vim.notify_once(
      'mlxd: native inline completion needs Neovim 0.12; using fallback',
      vim.log.levels.WARN
    )
  end
  return 'fallback'
end

function M.buf_impl(bufnr)
  return vim.b[bufnr].mlxd_ghost
end

--- The ghost text shown in `bufnr` (first line, then virt_lines joined by "\n"), or nil.
function M.ghost_text(bufnr)
  bufnr = bufnr == nil and vim.api.nvim_get_current_buf() or bufnr
  bufnr = bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr
  local name = M.buf_impl(bufnr) == 'native' and native.NS or 'mlxd.ghost'
  local ns = vim.api.nvim_get_namespaces()[name]
  if not ns then
    return nil
  end
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local d = marks[1][4]
  local function chunks_text(chunks, skip_hint)
    local s = {}
    for _, c in ipairs(chunks or {}) do
      if not (skip_hint and c[2] ~= (chunks[1] and chunks[1][2])) then
        s[#s + 1] = c[1]
      end
    end
    return table.concat(s)
  end
  local lines = { chunks_text(d.virt_text, true) }
  for _, vl in ipairs(d.virt_lines or {}) do
    lines[#lines + 1] = chunks_text(vl, true)
  end
  return table.concat(lines, '\n')
end

--- Insert `text` replacing the byte range (0-based rows/cols, end exclusive) and put the cursor
--- after it. Shared by the fallback and by the native accept-line path.
function M.apply_text(bufnr, srow, scol, erow, ecol, text)
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
  local win = vim.fn.bufwinid(bufnr)
  if win ~= -1 then
    local row = srow + #lines - 1
    local col = (#lines == 1 and scol or 0) + #lines[#lines]
    vim.api.nvim_win_set_cursor(win, { row + 1, col })
  end
end

--- The next word of `rest`: leading blanks and a run of word characters, or of other
--- non-blank characters; a leading newline with the next line's indentation.
function M.first_word(rest)
  return rest:match('^\n[ \t]*') or rest:match('^%s*[%w_]+') or rest:match('^%s*[^%w_%s]+') or rest
end

--- The next line of `rest` (the not-yet-typed part of a suggestion): up to the newline, or the
--- newline plus the following line when `rest` starts a new line.
function M.first_line(rest)
  local nl = rest:find('\n', 1, true)
  if nl == 1 then
    local nl2 = rest:find('\n', 2, true)
    return nl2 and rest:sub(1, nl2 - 1) or rest
  end
  return nl and rest:sub(1, nl - 1) or rest
end

-- The part of a native item not typed yet (insertText minus what is typed inside its range).
local function native_rest(item)
  local bufnr = vim.api.nvim_get_current_buf()
  local text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
  local cur = vim.api.nvim_win_get_cursor(0)
  local crow, ccol = cur[1] - 1, cur[2]
  local r = item.range
  if r and r.start and r.start.row == crow and r.start.col <= ccol then
    local line = vim.api.nvim_buf_get_lines(bufnr, crow, crow + 1, true)[1]
    local typed = line:sub(r.start.col + 1, ccol)
    if text:sub(1, #typed) == typed then
      text = text:sub(#typed + 1)
    end
  end
  return text
end

-- Native accept of a part (`pick(rest)`) of the item, at the cursor.
local function native_accept_part(pick, item)
  local cur = vim.api.nvim_win_get_cursor(0)
  local crow, ccol = cur[1] - 1, cur[2]
  M.apply_text(vim.api.nvim_get_current_buf(), crow, ccol, crow, ccol, pick(native_rest(item)))
end

--- The part of the shown suggestion not typed yet (what accept inserts at the cursor), or nil.
function M.rest(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local impl = M.buf_impl(bufnr)
  if impl == 'native' then
    local item = native.current(bufnr)
    return item and native_rest(item)
  elseif impl == 'fallback' then
    local item = require('mlxd.ghost').current(bufnr)
    return item and item.rest
  end
end

local actions = {
  native = {
    accept = function(bufnr)
      return native.current(bufnr) ~= nil and vim.lsp.inline_completion.get()
    end,
    accept_line = function(bufnr)
      return native.current(bufnr) ~= nil
        and vim.lsp.inline_completion.get({ on_accept = function(item)
          native_accept_part(M.first_line, item)
        end })
    end,
    accept_word = function(bufnr)
      return native.current(bufnr) ~= nil
        and vim.lsp.inline_completion.get({ on_accept = function(item)
          native_accept_part(M.first_word, item)
        end })
    end,
    suggest = native.trigger,
    dismiss = native.dismiss,
    select = function(bufnr, count)
      if not (native.current(bufnr) and native.visible(bufnr)) then
        return false
      end
      vim.lsp.inline_completion.select({ bufnr = bufnr, count = count })
      return true
    end,
  },
}

local function ghost_action(name, ...)
  local bufnr = vim.api.nvim_get_current_buf()
  local impl = M.buf_impl(bufnr)
  if impl == 'native' then
    if name == 'next' or name == 'prev' then
      return actions.native.select(bufnr, name == 'next' and 1 or -1)
    end
    return actions.native[name](bufnr, ...)
  elseif impl == 'fallback' then
    return require('mlxd.ghost')[name](bufnr, ...)
  end
  return false
end

--- Accept the whole suggestion; false when none is shown.
function M.accept()
  return ghost_action('accept')
end
--- Accept the next line of the suggestion.
function M.accept_line()
  return ghost_action('accept_line')
end
--- Accept the next word of the suggestion.
function M.accept_word()
  return ghost_action('accept_word')
end
--- Ask for a suggestion now (also right after :MlxdToggle or a dismiss).
function M.suggest()
  return ghost_action('suggest')
end
--- Hide the suggestion until the next keystroke.
function M.dismiss()
  return ghost_action('dismiss')
end
--- Show the next / previous suggestion.
function M.next()
  return ghost_action('next')
end
function M.prev()
  return ghost_action('prev')
end

local function set_keymaps(bufnr)
  require('mlxd.keys').set(bufnr, cfg().keymaps or {}, function(action)
    return M[action]()
  end)
end

--- Start ghost text in `bufnr` for the mlxd `client` (on LspAttach).
function M.enable(bufnr, client)
  local opts = cfg()
  if not (opts.ghost and opts.ghost.enabled) or M.buf_impl(bufnr) then
    return
  end
  if not client.server_capabilities.inlineCompletionProvider then
    return
  end
  local impl = M.ghost_impl()
  vim.b[bufnr].mlxd_ghost = impl
  if impl == 'native' then
    if require('mlxd.toggle').enabled(bufnr) then
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
      native.guard(bufnr)
    end
  else
    require('mlxd.ghost').attach(bufnr, client.id, opts.ghost.debounce_ms)
  end
  set_keymaps(bufnr)
end

return M
