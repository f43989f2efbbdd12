-- <C-c> in the chat buffer cancels a streaming answer: the daemon answers -32800 (seen in the
-- LSP log; Neovim does not pass that error to handlers), no text arrives after it, and the next
-- chat still works.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

H.run(function()
  local r = H.result
  vim.lsp.log.set_level('debug')
  local mlxd = H.setup({ chat = { max_tokens = 2000, temperature = 0 } })
  local chat = require('mlxd.chat')
  local updates = 0
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatUpdate',
    callback = function()
      updates = updates + 1
    end,
  })

  -- No file buffer: chat starts the daemon itself.
  vim.cmd('MlxdChat Write a very long story about a lighthouse.')
  local req = H.wait(function()
    local q = chat.last()
    if q and q.done then
      error('the chat ended before the cancel: ' .. vim.inspect(q.err or q.result))
    end
    return q and q.deltas >= 3 and q
  end, 20000, 'three streamed deltas')
  r.focused_chat = api.nvim_get_current_buf() == chat.buf()

  H.keys('<C-c>')
  H.wait(function()
    return req.cancelled
  end, 2000, '<C-c> to cancel')
  r.text_at_cancel = H.text(chat.buf())
  r.updates_at_cancel = updates
  H.wait(function()
    return req.replied
  end, 5000, 'the daemon to answer the cancelled request')
  r.reply_ms = (req.replied_at - req.cancelled_at) / 1e6
  H.sleep(700)
  r.text_later = H.text(chat.buf())
  r.updates_later = updates
  r.req_id = req.id
  r.result = req.result
  r.cancelled = req.cancelled

  -- The LSP log holds the raw reply to the cancelled request.
  vim.wait(200)
  local ack
  for line in io.lines(vim.lsp.log.get_filename()) do
    local is_ack = line:find('Received cancellation ack', 1, true)
    if is_ack and line:find('id = ' .. req.id .. ',', 1, true) then
      ack = line
    end
  end
  r.ack = ack

  -- :MlxdCancel with nothing running says so; a new chat works after the cancel.
  r.cancel_again = chat.cancel()
  mlxd.config.chat.max_tokens = 8
  local done
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatDone',
    callback = function(ev)
      done = ev.data
    end,
  })
  vim.cmd('MlxdChat And now a short one.')
  H.wait(function()
    return done
  end, 20000, 'the second answer')
  r.second = chat.last().result
  r.second_err = chat.last().err
  r.history_roles = vim.tbl_map(function(m)
    return m.role
  end, chat.history())
end, 28000)
