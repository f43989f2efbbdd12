-- Installing the plugin from its repository subdirectory, as the README says ($MLXD_TEST_INSTALL):
--   "lazy":    a lazy.nvim spec `{ dir = <repo>/editors/neovim, config = ... }`, loaded the way
--              lazy.nvim loads a local `dir` plugin (lazy.nvim itself cannot be downloaded here):
--              the directory on 'runtimepath', its plugin/ files sourced, then config();
--   "packadd": a symlink pack/mlxd/opt/mlxd -> <repo>/editors/neovim and `:packadd mlxd`.
-- Then `:help mlxd` works (doc/tags shipped), the commands exist, and the daemon attaches.
local here = vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2))
local H = dofile(here .. '/helpers.lua')
local api = vim.api

local how = assert(os.getenv('MLXD_TEST_INSTALL'), 'MLXD_TEST_INSTALL not set')
local plugin_dir = vim.fs.dirname(here)
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')
local cmd = vim.json.decode(assert(os.getenv('MLXD_TEST_CMD')))

H.run(function()
  local r = H.result
  vim.cmd('filetype plugin on')
  r.before = vim.fn.exists(':MlxdChat')
  if how == 'lazy' then
    local spec = {
      dir = plugin_dir,
      config = function()
        require('mlxd').setup({ cmd = cmd })
      end,
    }
    vim.opt.rtp:prepend(spec.dir)
    for _, f in ipairs(vim.fn.glob(spec.dir .. '/plugin/**/*.lua', false, true)) do
      vim.cmd.source(f)
    end
    spec.config()
  else
    local site = assert(os.getenv('MLXD_TEST_SITE'), 'MLXD_TEST_SITE not set')
    vim.opt.packpath:prepend(site)
    vim.cmd.packadd('mlxd')
    require('mlxd').setup({ cmd = cmd })
  end
  r.after = vim.fn.exists(':MlxdChat')
  local ok, err = pcall(vim.cmd.help, 'mlxd')
  r.help_ok, r.help_err = ok, not ok and tostring(err) or nil
  r.help_file = ok and vim.fs.basename(api.nvim_buf_get_name(0)) or nil
  if ok then
    vim.cmd('helpclose')
  end
  r.help_setup = pcall(vim.cmd.help, 'mlxd-setup')
  pcall(vim.cmd, 'helpclose')
  vim.cmd.edit(file)
  H.wait_ready(api.nvim_get_current_buf())
  r.status = require('mlxd').status()
end, 28000)
