-- A daemon that cannot start is reported once, with the fix ($MLXD_TEST_CASE):
--   "not_on_path": cmd names an executable that is not on $PATH;
--   "bad_path":    cmd is a path that does not exist;
--   "readme_path": cmd is the README's example path, which does not exist here (the advice must
--                  not suggest the path that just failed);
--   "exits":       the executable runs but exits before `initialize` (a wrong subcommand);
--   "tilde":       cmd = '~/bin/mlxd' (a string, as the README shows) starts the daemon.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local case = assert(os.getenv('MLXD_TEST_CASE'), 'MLXD_TEST_CASE not set')
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')
local real = vim.json.decode(assert(os.getenv('MLXD_TEST_CMD')))

H.run(function()
  local r = H.result
  r.notes = {}
  vim.notify = function(msg, level)
    table.insert(r.notes, { msg = msg, level = level })
  end
  vim.cmd('filetype on')
  vim.cmd.runtime('plugin/mlxd.lua')
  local mlxd = require('mlxd')
  local config = real[#real]
  local cmd = ({
    not_on_path = { 'mlxd-not-installed', 'serve' },
    bad_path = { '/nonexistent/venv/bin/mlxd', 'serve' },
    readme_path = '~/.venvs/mlxd/bin/mlxd',
    exits = { real[1], 'srve' },
    tilde = '~/bin/mlxd',
  })[case]
  mlxd.setup({ cmd = cmd, config_file = config })
  vim.cmd.edit(file)
  if case == 'tilde' then
    H.wait_ready(api.nvim_get_current_buf())
    r.started = true
  else
    H.wait(function()
      for _, n in ipairs(r.notes) do
        if n.msg:find('^mlxd') then
          return true
        end
      end
    end, 15000, 'a notification')
  end
  -- A second file and a chat request must not repeat it.
  vim.cmd.edit(vim.fs.dirname(file) .. '/other.py')
  H.sleep(300)
  mlxd.models(function() end)
  H.sleep(case == 'exits' and 3000 or 300)
  r.status = mlxd.status()
end, 30000)
