-- Ghost text end to end: type in insert mode, a suggestion appears as an extmark, the accept key
-- inserts it; dismiss hides the next one. $MLXD_TEST_GHOST picks "native" or "fallback".
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  local mlxd = H.setup({ ghost = { implementation = impl } })
  -- What a statusline would show while the daemon starts and loads the model.
  r.statuslines, r.lsp_status = {}, {}
  vim.api.nvim_create_autocmd({ 'User', 'LspProgress' }, {
    pattern = { 'MlxdStatus', '*' },
    callback = function(ev)
      if ev.event == 'LspProgress' or ev.match == 'MlxdStatus' then
        table.insert(r.statuslines, mlxd.status())
        table.insert(r.lsp_status, vim.lsp.status())
      end
    end,
  })
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  local client = H.wait_ready(buf)
  r.server_info = client.server_info
  r.impl = vim.b[buf].mlxd_ghost
  r.nvim = tostring(vim.version())

  -- Record what the daemon answers, without changing it.
  local responses = {}
  local orig = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == 'textDocument/inlineCompletion' then
      local inner = handler
      handler = function(err, result, ctx, ...)
        responses[#responses + 1] = { err = err, result = result, position = params.position }
        return inner(err, result, ctx, ...)
      end
    end
    return orig(self, method, params, handler, bufnr)
  end

  local ns_name = impl == 'native' and 'nvim.lsp.inline_completion' or 'mlxd.ghost'
  local function marks()
    local ns = api.nvim_get_namespaces()[ns_name]
    return ns and api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true }) or {}
  end

  -- Type like a user; keep typing until the model offers something that extends the line.
  local words = { 'def fibonacci(n):', '\n    return', ' n', ' +', ' 1' }
  local typed = {}
  H.keys('i')
  local mark
  for _, w in ipairs(words) do
    H.keys((w:gsub('\n', '<CR>')))
    typed[#typed + 1] = w
    local ok = pcall(H.wait, function()
      return #marks() > 0
    end, 4000, 'ghost text')
    if ok then
      mark = marks()[1]
      break
    end
  end
  H.check(mark, 'no ghost text appeared after typing: ' .. table.concat(typed))
  r.mode_when_shown = api.nvim_get_mode().mode
  r.ghost = mlxd.ghost_text(buf)
  r.mark = {
    row = mark[2],
    col = mark[3],
    virt_text = mark[4].virt_text,
    virt_lines = mark[4].virt_lines,
  }
  r.before = api.nvim_buf_get_lines(buf, 0, -1, true)
  r.cursor_before = api.nvim_win_get_cursor(0)
  r.response = responses[#responses]
  r.responses = #responses

  -- Accept with the default key.
  local tick = api.nvim_buf_get_changedtick(buf)
  H.keys('<M-l>')
  H.wait(function()
    return api.nvim_buf_get_changedtick(buf) ~= tick
  end, 3000, 'the accept key to change the buffer')
  H.sleep(50)
  r.after = api.nvim_buf_get_lines(buf, 0, -1, true)
  r.cursor_after = api.nvim_win_get_cursor(0)
  r.mode_after = api.nvim_get_mode().mode
  r.marks_after_accept = #marks()

  -- Next suggestion: dismiss it and make sure the buffer stays as it is.
  local n = #responses
  H.keys(' ')
  local shown = pcall(H.wait, function()
    return #responses > n and #marks() > 0
  end, 4000, 'a second suggestion')
  r.second_shown = shown
  if shown then
    local text = H.text(buf)
    H.keys('<C-]>')
    H.wait(function()
      return #marks() == 0
    end, 2000, 'dismiss to hide the ghost text')
    H.sleep(400) -- longer than the debounce: nothing may come back without a keystroke
    r.dismissed = #marks() == 0 and H.text(buf) == text
  end
  H.keys('<Esc>')
  H.sleep(50)
  r.marks_after_esc = #marks()
  r.status = mlxd.status()
end, 28000)
