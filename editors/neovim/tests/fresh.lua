-- Ghost text right after opening a file, and only for the buffer being typed in
-- ($MLXD_TEST_GHOST: "native" / "fallback").
--  A. Two files open, the other one hidden. In the current one, not edited since it was read,
--     `A` at the end of its last line asks for a suggestion: the daemon's answer is shown (0.12's
--     built-in request carries the LSP document version, 0 until the first edit, which the old
--     guard compared with b:changedtick, so every answer before the first edit was dropped).
--  B. Keys typed in one buffer send no inline request for another (0.12's built-in registers its
--     InsertEnter/CursorMovedI autocommands for every buffer: each hidden buffer asked too, at
--     the current window's cursor, and all those requests queued on the one model).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local impl = os.getenv('MLXD_TEST_GHOST') or 'native'
local file = assert(os.getenv('MLXD_TEST_FILE'), 'MLXD_TEST_FILE not set')
local other = vim.fs.joinpath(vim.fs.dirname(file), 'other.py')
local METHOD = 'textDocument/inlineCompletion'

H.run(function()
  local r = H.result
  local mlxd = H.setup({ ghost = { implementation = impl } })
  vim.fn.writefile({ 'def sub(a, b):', '    return a - b', '' }, other)
  vim.fn.writefile({ 'def add(a, b):', '    return a' }, file)
  vim.cmd.edit(other)
  local obuf = api.nvim_get_current_buf()
  local client = H.wait_ready(obuf)
  vim.cmd.edit(file)
  local buf = api.nvim_get_current_buf()
  H.wait(function()
    return client.attached_buffers[buf] and vim.b[buf].mlxd_ghost
  end, 10000, 'the second buffer to attach')
  r.impl = vim.b[buf].mlxd_ghost
  r.other_listed = vim.fn.buflisted(obuf) == 1 and api.nvim_buf_is_loaded(obuf)

  -- Every inline request this client sends, by buffer, and the answers to the current one.
  local sent, answers = {}, {}
  local orig = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == METHOD then
      local uri = params and params.textDocument and params.textDocument.uri or '?'
      sent[#sent + 1] = uri
      if uri == vim.uri_from_bufnr(buf) and handler then
        local h = handler
        handler = function(err, result, ...)
          local items = result and (result.items or result) or {}
          answers[#answers + 1] = { err = err and err.message, n = #items,
                                    text = items[1] and items[1].insertText }
          return h(err, result, ...)
        end
      end
    end
    return orig(self, method, params, handler, bufnr)
  end

  local tick = api.nvim_buf_get_changedtick(buf)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.keys('A')
  -- The first answer with a visible item must show; wait for it, then a little for the redraw.
  local function answered()
    for _, a in ipairs(answers) do
      if a.n > 0 and type(a.text) == 'string' and a.text:match('%S') then
        return true
      end
    end
  end
  r.answered = pcall(H.wait, answered, 15000, 'an answer with an item')
  r.shown = pcall(H.wait, function()
    return (mlxd.ghost_text(buf) or '') ~= ''
  end, 1000, 'the ghost text')
  r.ghost = mlxd.ghost_text(buf)
  r.unedited = api.nvim_buf_get_changedtick(buf) == tick
  r.answers = answers

  -- B. A few keys more; then count what went where.
  for _, k in ipairs({ ' ', '+', ' ', 'b' }) do
    H.keys(k)
    H.sleep(300)
  end
  H.keys('<Esc>')
  H.sleep(300)
  r.sent = sent
  r.this_uri = vim.uri_from_bufnr(buf)
  r.other_uri = vim.uri_from_bufnr(obuf)
  r.errmsg = vim.v.errmsg
end, 60000)
