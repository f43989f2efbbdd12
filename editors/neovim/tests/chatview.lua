-- Issue #18 new-user findings 2 and 10, as a user meets them:
--  2. :MlxdChat with no prompt, then <Esc> (or an empty <CR>) at `mlxd> `: nothing happens (no
--     chat window opens, the source window stays current), so the next :'<,'>MlxdChat sends the
--     source selection, not the chat buffer.
-- 10. With chat.split = 'horizontal' and an answer longer than the window, the window follows
--     to the true end: the last line and the footer's virtual lines under it are on screen.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  H.setup({ chat = { split = 'horizontal', max_tokens = 24, temperature = 0 } })
  vim.cmd.edit(file)
  local src = api.nvim_get_current_buf()
  local src_win = api.nvim_get_current_win()
  local client = H.wait_ready(src)
  local chats = {}
  local orig = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == 'mlxd/chat' then
      chats[#chats + 1] = params
    end
    return orig(self, method, params, handler, bufnr)
  end
  local chat = require('mlxd.chat')

  r.cancelled = {}
  for _, how in ipairs({ '<Esc>', '<CR>' }) do
    H.keys(':MlxdChat<CR>' .. how)
    H.sleep(100)
    r.cancelled[#r.cancelled + 1] = {
      how = how,
      windows = #api.nvim_tabpage_list_wins(0),
      source_current = api.nvim_get_current_win() == src_win,
      chats = #chats,
    }
  end

  -- The whole (long) file as context: the question alone is longer than the window.
  local done
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatDone',
    callback = function(ev)
      done = ev.data
    end,
  })
  H.keys('ggVG:MlxdChat explain<CR>')
  H.wait(function()
    return done
  end, 20000, 'the chat answer')
  r.err = done.err
  local content = chats[1] and chats[1].messages[#chats[1].messages].content or ''
  r.context_from_source = content:find('line_40 = 40', 1, true) ~= nil
  r.context_from_chat = content:find('## You', 1, true) ~= nil
  H.sleep(50)
  local win = vim.fn.win_findbuf(chat.buf())[1]
  local last = api.nvim_buf_line_count(chat.buf())
  r.view = {
    height = api.nvim_win_get_height(win),
    cursor_row = api.nvim_win_get_cursor(win)[1],
    last = last,
    -- screen rows from the window's top line to the end, virtual lines under the last included
    rows_to_end = api.nvim_win_text_height(win, { start_row = vim.fn.line('w0', win) - 1 }).all,
  }
end, 40000)
