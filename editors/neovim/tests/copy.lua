-- Yanks go to the daemon (`mlxd/didCopy`), which keeps them as neighbour snippets for inline
-- prompts and counts them (`mlxd/stats` inline.copies). $MLXD_TEST_GHOST picks the ghost text
-- implementation. A yank of two lines is sent (its text, the buffer's URI) and counted; a
-- yanked word, a deleted line and a yank with :MlxdToggle off are not sent; each is checked
-- against a yank after it that is sent, which must be the only one. A yanked line longer than
-- MAX_CHARS is sent cut to MAX_CHARS characters.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')
local METHOD = 'mlxd/didCopy'

H.run(function()
  local r = H.result
  local copy = require('mlxd.copy')
  H.setup({ ghost = { implementation = impl } })
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  local client = H.wait_ready(buf)
  r.advertised = require('mlxd.cursor').advertised(client, METHOD)
  r.uri = vim.uri_from_bufnr(buf)

  local sent = {}
  local notify = client.notify
  client.notify = function(self, method, params)
    if method == METHOD then
      sent[#sent + 1] = { uri = params.textDocument.uri, text = params.text }
    end
    return notify(self, method, params)
  end

  local function copies()
    return H.inline_stats(client).copies
  end

  -- Each phase: what must not send, then a yank of lines that must; returns what it sent.
  local function phase(name, act)
    local base = #sent
    act()
    H.keys('gg2yy')
    H.wait(function()
      return #sent > base
    end, 10000, name .. ': the yank of two lines to be sent')
    H.sleep(200)
    r[name] = vim.list_slice(sent, base + 1)
  end

  phase('lines', function() end)
  r.counted = H.wait(function()
    local n = copies()
    return n >= 1 and n
  end, 10000, 'the daemon to count the yank')
  phase('word', function()
    H.keys('jyiw')
  end)
  phase('delete', function()
    H.keys('Gdd')
  end)
  phase('toggled', function()
    vim.cmd('MlxdToggle')
    H.keys('gg3yy')
    vim.cmd('MlxdToggle')
  end)
  r.copies = copies()
  -- A minified line: sent cut to MAX_CHARS characters.
  phase('long', function()
    api.nvim_buf_set_lines(buf, -1, -1, false, { ('é'):rep(copy.MAX_CHARS + 500) })
    H.keys('Gyy')
  end)

  r.buffers_attached = copy.buffers()
  vim.lsp.buf_detach_client(buf, client.id)
  H.wait(function()
    return not vim.tbl_contains(copy.buffers(), buf)
  end, 5000, 'the buffer to be dropped on detach')
  r.group_after_detach = pcall(api.nvim_get_autocmds, { group = 'mlxd.copy.' .. buf })
end, 60000)
