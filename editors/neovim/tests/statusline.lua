-- The documented statusline: `vim.o.statusline = require('mlxd.statusline').with_default()`
-- keeps Neovim's own statusline (0.11: the built-in one behind an empty option; 0.12: its
-- default value) and shows the daemon state, separated from the ruler.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

local function draw(stl)
  return api.nvim_eval_statusline(stl, { winid = api.nvim_get_current_win(), maxwidth = 100 }).str
end

H.run(function()
  local r = H.result
  vim.o.laststatus = 2
  r.default_option = vim.go.statusline
  local sl = require('mlxd.statusline')
  vim.o.statusline = sl.with_default()
  r.option = vim.o.statusline
  r.twice = sl.with_default() == vim.o.statusline
  r.before_start = draw(vim.o.statusline)
  r.builtin_before = draw(sl.BUILTIN)
  H.setup({})
  vim.cmd.edit(file)
  H.wait_ready(api.nvim_get_current_buf())
  H.sleep(50)
  r.ready = draw(vim.o.statusline)
  r.text = sl.text()
end, 28000)
