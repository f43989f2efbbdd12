-- Several items ($MLXD_TEST_GHOST: "native" / "fallback"), from a pygls server that returns
-- three (tests/editors/servers/several_items.py): the count shows at once as "(1/3)", next and
-- previous cycle with wrap-around, accept inserts the item shown.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

-- The whole virtual text of the first extmark, hint included.
local function shown(buf)
  local ns = api.nvim_get_namespaces()[impl == 'native' and 'nvim.lsp.inline_completion' or 'mlxd.ghost']
  local marks = ns and api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true }) or {}
  if #marks == 0 then
    return ''
  end
  local s = {}
  for _, c in ipairs(marks[1][4].virt_text or {}) do
    s[#s + 1] = c[1]
  end
  return table.concat(s)
end

H.run(function()
  local r = H.result
  local mlxd = H.setup({ ghost = { implementation = impl } })
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  H.wait_ready(buf)
  api.nvim_buf_set_lines(buf, 0, -1, true, { 'x = ' })
  api.nvim_win_set_cursor(0, { 1, 4 })
  H.keys('A')
  H.wait(function()
    return shown(buf) ~= ''
  end, 5000, 'ghost text')
  r.seen = { shown(buf) }
  for _, k in ipairs({ '<M-]>', '<M-]>', '<M-]>', '<M-[>' }) do
    H.keys(k)
    H.sleep(30)
    r.seen[#r.seen + 1] = shown(buf)
  end
  H.keys('<M-l>')
  H.sleep(50)
  r.line = api.nvim_get_current_line()
  r.rest_gone = mlxd.rest(buf) == nil
end, 25000)
