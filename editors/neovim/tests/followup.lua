-- Issue #15 case 2 in Neovim: "explain" on lines of an excluded .env, then the .env buffer is
-- wiped (closed at the daemon: only the conversation's memory can keep it local) and a follow-up
-- is typed from another buffer. Records each answer's backend and the history sent.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local env_file = assert(os.getenv('MLXD_TEST_ENV_FILE'), 'MLXD_TEST_ENV_FILE not set')
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  H.setup({ chat = { max_tokens = 8, temperature = 0 } })
  local chat = require('mlxd.chat')
  local done
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatDone',
    callback = function(ev)
      done = ev.data
    end,
  })
  local function ask(keys)
    done = nil
    H.keys(keys)
    H.wait(function()
      return done
    end, 20000, 'the chat answer')
    return done
  end

  vim.cmd.edit(env_file)
  local secret = api.nvim_get_current_buf()
  H.wait_ready(secret)
  local first = ask('ggVj:MlxdChat explain these settings<CR>')
  r.first = { err = first.err, backend = first.result and first.result.backend }

  vim.cmd.edit(file)
  H.wait_ready(api.nvim_get_current_buf())
  vim.cmd('bwipeout! ' .. secret)
  H.sleep(300) -- the didClose reaches the daemon before the follow-up
  local second = ask(':MlxdChat which of these settings are unused?<CR>')
  r.second = { err = second.err, backend = second.result and second.result.backend }
  r.history = chat.history()
end, 50000)
