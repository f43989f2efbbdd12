-- A backend that streams reasoning before its answer: the chat buffer shows the reasoning in a
-- quoted, folded block between the `## mlxd` header and the answer, never in the answer text.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

H.run(function()
  local r = H.result
  H.setup({ chat = { max_tokens = 64 } })
  local chat = require('mlxd.chat')
  local reasoning, reasoning_snapshot, first_text_snapshot, done = {}, nil, nil, nil
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatReasoning',
    callback = function(ev)
      reasoning[#reasoning + 1] = ev.data.reasoning
      reasoning_snapshot = H.text(chat.buf())
    end,
  })
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatUpdate',
    callback = function()
      first_text_snapshot = first_text_snapshot or H.text(chat.buf())
    end,
  })
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatDone',
    callback = function(ev)
      done = ev.data
    end,
  })
  vim.cmd('MlxdChat why?')
  H.wait(function()
    return done
  end, 20000, 'the answer')
  r.err = done.err
  r.result = done.result
  r.reasoning_events = reasoning
  r.reasoning_snapshot = reasoning_snapshot
  r.first_text_snapshot = first_text_snapshot
  r.final = H.text(chat.buf())
  r.history = chat.history()
  local win = vim.fn.bufwinid(chat.buf())
  local lines = api.nvim_buf_get_lines(chat.buf(), 0, -1, true)
  r.folded = {}
  for i, line in ipairs(lines) do
    r.folded[#r.folded + 1] = { line = line, closed = vim.fn.foldclosed(i) ~= -1 }
  end
  r.fold_win_is_chat = api.nvim_win_get_buf(win) == chat.buf()
  r.blocks = chat.code_blocks()
end, 30000)
