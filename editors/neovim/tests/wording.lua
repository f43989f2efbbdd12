-- The daemon words its messages for Neovim (it learns the editor from initialize's clientInfo):
-- a typo in setup()'s init_options names init_options, not "initializationOptions", and a
-- backend without a key points to :MlxdSetKey, not mlxd/setApiKey.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  r.notes = {}
  vim.notify = function(msg, level)
    table.insert(r.notes, { msg = msg, level = level })
  end
  local mlxd = H.setup({ init_options = { inline = { multi_line = 'sometimes' } } })
  vim.cmd.edit(file)
  H.wait(function()
    return vim.iter(r.notes):any(function(n)
      return n.msg:find('multi_line', 1, true) ~= nil
    end)
  end, 20000, 'the settings typo to be reported')
  local client = H.wait_ready(nil)
  local done
  mlxd.request(client, 'mlxd/chat', {
    messages = { { role = 'user', content = 'hi' } },
    backend = 'cloud',
  }, function(err, result)
    done = { err = err, result = result }
  end)
  H.wait(function()
    return done
  end, 10000, 'the chat to the keyless backend')
  r.chat_error = done.err and done.err.message
end, 30000)
