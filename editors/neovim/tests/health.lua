-- :checkhealth mlxd twice: before any daemon runs (a probe daemon is started) and with the
-- plugin's own client attached to a file.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

local function checkhealth()
  vim.cmd('checkhealth mlxd')
  local lines = api.nvim_buf_get_lines(0, 0, -1, true)
  vim.cmd('bwipeout!')
  return lines
end

H.run(function()
  local r = H.result
  local mlxd = H.setup({})
  r.probe = checkhealth()
  r.client_after_probe = mlxd.client() ~= nil

  vim.cmd.edit(file)
  H.wait_ready(api.nvim_get_current_buf())
  r.running = checkhealth()
end, 28000)
