-- Ghost-text keys ($MLXD_TEST_GHOST: "native" / "fallback").
--  A. With no suggestion shown, each key does what it does without the plugin (compared with a
--     buffer that has no mappings): an ALT chord is <Esc> + key, never a typed letter.
--  B. The "suggest" key asks at once (triggerKind Invoked); accept-word inserts one word.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')
local KEYS = { '<M-l>', '<M-L>', '<M-]><Esc>', '<M-[><Esc>', '<M-Right>', '<C-]>' } -- <Esc>: ends ] and [
local LINES = { 'abc def', 'ghi', 'jkl' }

-- Type `key` in insert mode (appending after col 1 of line 2) in the current buffer.
local function press(key)
  H.keys('<Esc>')
  api.nvim_buf_set_lines(0, 0, -1, true, LINES)
  api.nvim_win_set_cursor(0, { 2, 1 })
  H.keys('a' .. key)
  H.sleep(30)
  local out = {
    lines = api.nvim_buf_get_lines(0, 0, -1, true),
    cursor = api.nvim_win_get_cursor(0),
    mode = api.nvim_get_mode().mode,
  }
  H.keys('<Esc><Esc>')
  return out
end

H.run(function()
  local r = H.result
  -- Fallback: a long debounce, so nothing is asked before the keys in A (native: 200 ms).
  local mlxd = H.setup({ ghost = { implementation = impl, debounce_ms = 60000 } })
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  local client = H.wait_ready(buf)
  r.impl = vim.b[buf].mlxd_ghost

  r.with_plugin, r.without = {}, {}
  for _, k in ipairs(KEYS) do
    r.with_plugin[k] = press(k)
  end
  vim.cmd('enew')
  vim.bo.buftype = 'nofile'
  for _, k in ipairs(KEYS) do
    r.without[k] = press(k)
  end
  vim.cmd.buffer(buf)

  -- B. Suggest now.
  local kinds = {}
  local orig = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == 'textDocument/inlineCompletion' then
      kinds[#kinds + 1] = params.context.triggerKind
    end
    return orig(self, method, params, handler, bufnr)
  end
  api.nvim_buf_set_lines(buf, 0, -1, true, { 'def word_count(text):', '    ' })
  api.nvim_win_set_cursor(0, { 2, 4 })
  H.keys('A')
  H.sleep(600) -- native asks by itself after 200 ms; let that answer come and go
  mlxd.dismiss()
  local before = #kinds
  H.keys('<M-\\>')
  local shown = pcall(H.wait, function()
    return mlxd.rest(buf) ~= nil and mlxd.rest(buf) ~= ''
  end, 5000, 'a suggestion after the suggest key')
  r.suggest_kinds = vim.list_slice(kinds, before + 1)
  r.suggest_shown = shown
  if shown then
    local rest = mlxd.rest(buf)
    local line = api.nvim_get_current_line()
    r.word = mlxd.first_word(rest)
    r.expected = vim.split(line .. r.word, '\n', { plain = true })
    H.keys('<M-Right>')
    H.sleep(50)
    r.after_word = api.nvim_buf_get_lines(buf, 1, -1, true)
  end
  H.keys('<Esc>')
end, 30000)
