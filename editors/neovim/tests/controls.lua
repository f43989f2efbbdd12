-- The controls Copilot users reach for ($MLXD_TEST_GHOST: "native" / "fallback"):
--  A. :MlxdToggle turns ghost text off in this buffer (no request, nothing shown), again on;
--     :MlxdToggle! turns it off everywhere, a second buffer too.
--  D. A markdown buffer has no ghost text by default (ghost.filetypes); :MlxdToggle turns it on.
--  B. :MlxdInsert puts the last code block of an answer at the cursor of the source window.
--  C. :MlxdPick (vim.ui.select) pins chat to the chosen backend.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')

H.run(function()
  local r = H.result
  local mlxd = H.setup({ ghost = { implementation = impl } })
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  local client = H.wait_ready(buf)
  local asked, chats = 0, {}
  local orig = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == 'textDocument/inlineCompletion' then
      asked = asked + 1
    elseif method == 'mlxd/chat' then
      chats[#chats + 1] = params
    end
    return orig(self, method, params, handler, bufnr)
  end
  local function type_and_look(b)
    api.nvim_set_current_buf(b)
    api.nvim_buf_set_lines(b, 0, -1, true, { 'def word_count(text):', '    ' })
    api.nvim_win_set_cursor(0, { 2, 4 })
    local before = asked
    H.keys('Are')
    local shown = pcall(H.wait, function()
      return mlxd.ghost_text(b) ~= nil
    end, 1500, 'ghost text')
    H.keys('<Esc>')
    return { asked = asked - before, shown = shown }
  end

  -- A. Toggle.
  vim.cmd('MlxdToggle')
  r.off = type_and_look(buf)
  r.status_off = mlxd.status()
  vim.cmd('MlxdToggle')
  r.on = type_and_look(buf)
  vim.cmd('MlxdToggle!')
  vim.cmd.edit(vim.fs.dirname(file) .. '/other.py')
  local other = api.nvim_get_current_buf()
  H.wait(function()
    return client.attached_buffers[other]
  end, 5000, 'the second buffer to attach')
  r.global_off_other = type_and_look(other)
  r.global_off_first = type_and_look(buf)
  vim.cmd('MlxdToggle!')
  r.global_on = type_and_look(other)

  -- D. Prose and commit messages have no ghost text by default (ghost.filetypes); :MlxdToggle
  -- turns it on in one such buffer.
  vim.cmd.edit(vim.fs.dirname(file) .. '/notes.md')
  local md = api.nvim_get_current_buf()
  H.wait(function()
    return client.attached_buffers[md]
  end, 5000, 'the markdown buffer to attach')
  r.markdown_default = type_and_look(md)
  vim.cmd('MlxdToggle')
  r.markdown_toggled = type_and_look(md)

  -- B. Insert the last code block of an answer at the cursor of the source window.
  api.nvim_set_current_buf(buf)
  api.nvim_buf_set_lines(buf, 0, -1, true, { 'a = 1', '', 'b = 2' })
  api.nvim_win_set_cursor(0, { 2, 0 })
  local answer = 'Try:\n```python\nx = 1\n```\nor\n```python\ndef f():\n    return 2\n```\nDone.'
  r.blocks = require('mlxd.chat').code_blocks(answer)
  require('mlxd.chat').open() -- the chat window is current, as after :MlxdChat
  r.inserted = require('mlxd.chat').insert_code(nil, { text = answer })
  r.after_insert = api.nvim_buf_get_lines(buf, 0, -1, true)
  r.inserted_first = require('mlxd.chat').insert_code(1, { text = answer })
  r.after_first = api.nvim_buf_get_lines(buf, 0, -1, true)

  -- C. Pick the local model with vim.ui.select; the next chat pins that backend.
  vim.ui.select = function(items, opts, on_choice)
    r.pick_labels = vim.tbl_map(opts.format_item, items)
    for _, it in ipairs(items) do
      if it.backend == 'local' then
        return on_choice(it)
      end
    end
    on_choice(nil)
  end
  vim.cmd('MlxdPick')
  H.wait(function()
    return r.pick_labels
  end, 10000, 'the picker')
  local req = require('mlxd.chat').send('hi')
  H.wait(function()
    return req.done
  end, 20000, 'the answer')
  r.chat_backend_param = chats[#chats] and chats[#chats].backend
  r.chat_result_backend = req.result and req.result.backend
end, 40000)
