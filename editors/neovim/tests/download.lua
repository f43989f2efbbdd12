-- A model download (a Hugging Face repo id, served slowly by a loopback fake Hub) shows its
-- bytes in the statusline; :MlxdCancel with no answer streaming stops it; the daemon says why.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  r.notes = {}
  vim.notify = function(msg, level)
    table.insert(r.notes, { msg = msg, level = level })
  end
  local mlxd = H.setup()
  vim.cmd.edit(file) -- starts the daemon; its config preloads the model: the download begins
  r.downloading = H.wait(function()
    for _, p in pairs(mlxd.state.progress) do
      if (p.message or ''):find('^downloading ') and (p.percentage or 0) > 0 then
        return mlxd.status()
      end
    end
  end, 30000, 'the download to report bytes')
  r.cancellable = vim.tbl_count(vim.tbl_filter(function(p)
    return p.cancellable == true
  end, mlxd.state.progress))

  vim.cmd('MlxdCancel')
  local status = H.wait(function()
    local st = mlxd.state.status
    return st and st.state == 'error' and st
  end, 10000, 'the daemon to say the load was cancelled')
  r.status_message = status.message
  H.wait(function()
    return vim.tbl_isempty(mlxd.state.progress)
  end, 5000, 'the load progress to end')
  r.statusline = mlxd.status()
  r.again = mlxd.cancel_load()
  vim.cmd('MlxdCancel')
end, 40000)
