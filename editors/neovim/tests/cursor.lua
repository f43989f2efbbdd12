-- Where the cursor rests goes to the daemon (`mlxd/didMoveCursor`): $MLXD_TEST_CURSOR picks
-- the case, $MLXD_TEST_GHOST the ghost text implementation.
--  "on": a burst of moves sends one notification, where the cursor came to rest, in normal and
--        in insert mode, in the client's position encoding; the daemon counts each one
--        (`mlxd/stats` inline.cursorMoves); back at the position last sent, :MlxdToggle off,
--        or in a filetype without ghost text (markdown) nothing is sent; in normal mode on a
--        line's last character, the end of the line is sent (where `a`/`A` type).
--  "ghost_off": setup({ghost = {enabled = false}}): nothing is sent at all.
--  "unadvertised": a server that does not list the method (an older daemon): nothing is sent.
-- "Nothing is sent" is checked against a later rest that is sent: the moves that must not send
-- are given a few rest times first, then a move that must send is waited for.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local case = os.getenv('MLXD_TEST_CURSOR') or 'on'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')
local METHOD = 'mlxd/didMoveCursor'

H.run(function()
  local r = H.result
  local cursor = require('mlxd.cursor')
  local quiet = 4 * cursor.REST_MS -- long enough for a wrongly scheduled send to go out
  H.setup({ ghost = { implementation = impl, enabled = case ~= 'ghost_off' } })
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  local client = H.wait_ready(buf)
  r.advertised = cursor.advertised(client)
  r.encoding = client.offset_encoding

  -- Every notification of the method the client sends from here on.
  local sent = {}
  local notify = client.notify
  client.notify = function(self, method, params)
    if method == METHOD then
      local uri, p = params.textDocument.uri, params.position
      sent[#sent + 1] = { uri = uri, line = p.line, character = p.character }
    end
    return notify(self, method, params)
  end

  if case ~= 'on' then
    H.keys('jjll')
    H.keys('Ax<Esc>')
    H.sleep(quiet)
    r.sent = sent
    r.buffers = cursor.buffers()
    if case == 'ghost_off' then
      r.moves = H.inline_stats(client).cursorMoves
    end
    return
  end

  -- The daemon's count of accepted notifications (this session's).
  local function moves()
    return H.inline_stats(client).cursorMoves
  end

  local function here()
    local c = api.nvim_win_get_cursor(0)
    return { line = c[1] - 1, col = c[2], text = api.nvim_get_current_line() }
  end

  -- Waits until the cursor's rest was sent and the daemon counted what was sent; returns what
  -- this phase sent, where the cursor rested, and how much the daemon's count rose.
  -- `anywhere`: wait for a notification wherever it says (the test checks where).
  local function phase(name, base_moves, base_sent, act, anywhere)
    act()
    local at = here()
    local want = vim.lsp.util.make_position_params(0, client.offset_encoding).position
    H.wait(function()
      local last = sent[#sent]
      local there = anywhere or (last and last.line == want.line and last.character == want.character)
      return #sent > base_sent and there
    end, 10000, name .. ': a notification at the resting cursor')
    local n = #sent - base_sent
    H.wait(function()
      return moves() >= base_moves + n
    end, 10000, name .. ': the daemon to count it')
    r[name] = { sent = vim.list_slice(sent, base_sent + 1), at = at, delta = moves() - base_moves }
  end

  -- Opening the file sent where its cursor is (before the recording began): counted once.
  r.opened = H.wait(function()
    local m = moves()
    return m >= 1 and m
  end, 10000, 'the position at open to be counted')
  H.sleep(quiet)
  r.opened_later = moves()

  -- A burst of moves in normal mode, each within the rest time of the last: one notification.
  phase('burst', moves(), #sent, function()
    for _ = 1, 5 do
      H.keys('j')
    end
    H.keys('3l')
  end)

  -- Insert mode (CursorMovedI), on a line with a character that is 2 bytes in UTF-8 and one
  -- unit in UTF-16: the position is in the client's encoding.
  phase('insert', moves(), #sent, function()
    H.keys('ji')
    H.keys('é')
    H.keys('x')
  end)
  phase('escape', moves(), #sent, function()
    H.keys('<Esc>')
  end)

  -- Away and back to where the last one went, within the rest time: nothing new to tell.
  -- Then :MlxdToggle off in this buffer, and a markdown buffer (ghost text off by default):
  -- nothing. Each then gets a move that is sent, which must be the only one.
  phase('back', moves(), #sent, function()
    H.keys('j')
    H.keys('k')
    H.sleep(quiet)
    H.keys('l')
  end)
  phase('toggled', moves(), #sent, function()
    vim.cmd('MlxdToggle')
    H.keys('j')
    H.sleep(quiet)
    H.keys('j')
    H.sleep(quiet)
    vim.cmd('MlxdToggle')
    H.keys('l')
  end)
  phase('markdown', moves(), #sent, function()
    vim.cmd.edit(vim.fs.dirname(file) .. '/notes.md')
    local md = api.nvim_get_current_buf()
    H.wait(function()
      return client.attached_buffers[md]
    end, 5000, 'the markdown buffer to attach')
    H.keys('jj')
    H.sleep(quiet)
    vim.cmd.buffer(buf)
    H.keys('l')
  end)
  r.markdown.sent_md = vim.tbl_filter(function(s)
    return s.uri:match('%.md$') ~= nil
  end, sent)

  -- Normal mode on a line's last character: `a` and `A` type after it, so the end of the line
  -- is where the user will type.
  phase('line_end', moves(), #sent, function()
    H.keys('j$')
  end, true)

  -- Detach: the buffer's timer and autocommands go.
  r.buffers_attached = cursor.buffers()
  vim.lsp.buf_detach_client(buf, client.id)
  H.wait(function()
    return not vim.tbl_contains(cursor.buffers(), buf)
  end, 5000, 'the buffer to be dropped on detach')
  r.group_after_detach = pcall(api.nvim_get_autocmds, { group = 'mlxd.cursor.' .. buf })
end, 60000)
