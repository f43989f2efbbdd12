-- :'<,'>MlxdChat streams the answer into the chat buffer; the buffer is recorded after each
-- update. Then :MlxdModels and the statusline.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  local mlxd = H.setup({ chat = { max_tokens = 24, temperature = 0 } })
  vim.cmd.edit(file)
  local src = api.nvim_get_current_buf()
  H.wait_ready(src)

  local chat = require('mlxd.chat')
  local snapshots, deltas, done = {}, {}, nil
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatUpdate',
    callback = function(ev)
      deltas[#deltas + 1] = ev.data.delta
      snapshots[#snapshots + 1] = H.text(chat.buf())
    end,
  })
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatDone',
    callback = function(ev)
      done = ev.data
    end,
  })

  -- Select the first two lines and ask about them, as a user would.
  H.keys('ggVj:MlxdChat explain<CR>')
  H.wait(function()
    return done
  end, 20000, 'the chat answer')
  local req = chat.last()
  r.err = req.err
  r.result = req.result
  r.deltas = deltas
  r.snapshots = snapshots
  r.resynced = req.resynced
  r.final = H.text(chat.buf())
  r.chat_buf_name = api.nvim_buf_get_name(chat.buf())
  r.chat_win_is_current = api.nvim_get_current_buf() == chat.buf()
  r.history = chat.history()
  r.status = mlxd.status()

  local models
  mlxd.models(function(res)
    models = res or { failed = true }
  end)
  H.wait(function()
    return models
  end, 5000, 'mlxd/models')
  r.models = models
  vim.cmd('MlxdModels')
  H.sleep(300)
  r.messages = api.nvim_exec2('messages', { output = true }).output
end, 28000)
