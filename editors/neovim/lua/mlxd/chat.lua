-- :MlxdChat: one chat buffer per Neovim; answers stream into it from `$/progress` partial results
-- of `mlxd/chat`. The buffer holds the transcript only; per-answer details are virtual lines.
local M = {}

local api = vim.api
local BUFNAME = 'mlxd://chat'
local ns = api.nvim_create_namespace('mlxd.chat')

---@class mlxd.chat.Request
---@field id integer? LSP request id
---@field client_id integer?
---@field token string partialResultToken
---@field text string concatenated deltas
---@field reasoning string concatenated reasoning deltas (kept out of `text`)
---@field shown_reasoning string the part of `reasoning` in the buffer's reasoning block
---@field answer_row integer first row after the `## mlxd` header
---@field start_row integer first row of the answer text (after the reasoning block)
---@field block {first: integer, open: boolean}? the reasoning block's rows
---@field deltas integer number of deltas applied
---@field result table? the final result
---@field err table? the error response
---@field done boolean no more text will be written
---@field cancelled boolean
---@field replied boolean the daemon answered (also after a cancel: with -32800)
---@field resynced boolean the streamed text differed from result.text and was replaced
---@field cancelled_at number? hrtime (ns) of the cancel
---@field replied_at number? hrtime (ns) of the daemon's answer

local onkey_ns = api.nvim_create_namespace('mlxd.chat.onkey')
local CTRL_C = '\3'

local history = {} -- {role, content} of finished turns
local current ---@type mlxd.chat.Request?
local chat_buf ---@type integer?

local function mlxd()
  return require('mlxd')
end

local function fire(pattern, data)
  api.nvim_exec_autocmds('User', { pattern = pattern, modeline = false, data = data })
end

--- The chat buffer (created on first use).
function M.buf()
  if chat_buf and api.nvim_buf_is_valid(chat_buf) then
    return chat_buf
  end
  chat_buf = api.nvim_create_buf(false, true)
  api.nvim_buf_set_name(chat_buf, BUFNAME)
  vim.bo[chat_buf].buftype = 'nofile'
  vim.bo[chat_buf].bufhidden = 'hide'
  vim.bo[chat_buf].swapfile = false
  vim.bo[chat_buf].filetype = 'markdown'
  vim.keymap.set('n', '<C-c>', M.cancel, { buffer = chat_buf, desc = 'mlxd: cancel the answer' })
  vim.keymap.set('i', '<C-c>', M.cancel, { buffer = chat_buf, desc = 'mlxd: cancel the answer' })
  return chat_buf
end

--- Show the chat buffer (reusing a window that already shows it) and return its window.
function M.open()
  local buf = M.buf()
  for _, win in ipairs(api.nvim_tabpage_list_wins(0)) do
    if api.nvim_win_get_buf(win) == buf then
      return win
    end
  end
  local opts = (mlxd().config or mlxd().defaults).chat
  local prev = api.nvim_get_current_win()
  local split = opts.split
  if split == 'vertical' then
    vim.cmd('botright vsplit')
  elseif split == 'horizontal' then
    vim.cmd('botright split')
  elseif split == 'tab' then
    vim.cmd('tabnew')
  end
  local win = api.nvim_get_current_win()
  api.nvim_win_set_buf(win, buf)
  vim.wo[win].wrap = true
  vim.wo[win].linebreak = true
  if not opts.focus then
    api.nvim_set_current_win(prev)
  end
  return win
end

local function buf_text(buf)
  return table.concat(api.nvim_buf_get_lines(buf, 0, -1, true), '\n')
end

-- The windows showing `buf` whose cursor sits on its last line: they follow what is added.
local function followers(buf)
  local last = api.nvim_buf_line_count(buf)
  return vim.tbl_filter(function(win)
    return api.nvim_win_get_cursor(win)[1] == last
  end, vim.fn.win_findbuf(buf))
end

-- Move each window's cursor to the last line and scroll it so the true end shows: the virtual
-- lines under the last line (footer, fallback lines) and the wrapped rest of a long last line.
-- Putting the cursor there only brings the line's first screen row into view.
local function follow(buf, wins)
  local n = api.nvim_buf_line_count(buf)
  for _, win in ipairs(wins) do
    api.nvim_win_set_cursor(win, { n, 0 })
    local height = api.nvim_win_get_height(win)
    local top = n -- the lowest topline that shows everything from it to the end
    while top > 1 and api.nvim_win_text_height(win, { start_row = top - 2 }).all <= height do
      top = top - 1
    end
    api.nvim_win_call(win, function()
      local view = vim.fn.winsaveview()
      if view.topline < top then
        vim.fn.winrestview({ topline = top, lnum = n, col = 0 })
      end
    end)
  end
end

-- Append text at the very end of the buffer; windows whose cursor sat on the last line follow.
local function append(buf, text)
  local wins = followers(buf)
  local last = api.nvim_buf_line_count(buf) - 1
  local col = #api.nvim_buf_get_lines(buf, last, last + 1, true)[1]
  api.nvim_buf_set_text(buf, last, col, last, col, vim.split(text, '\n', { plain = true }))
  follow(buf, wins)
end

-- Virtual lines after the last line; `text` may be a list of lines. Returns the extmark id.
local function note(buf, text, hl)
  local row = api.nvim_buf_line_count(buf) - 1
  local lines = {}
  for _, t in ipairs(type(text) == 'table' and text or { text }) do
    lines[#lines + 1] = { { t, hl or 'Comment' } }
  end
  local wins = followers(buf)
  local id = api.nvim_buf_set_extmark(buf, ns, row, 0, { virt_lines = lines })
  follow(buf, wins)
  return id
end

-- The sign of life between sending and the first token (a cold model can take seconds).
local function stop_waiting(req, buf)
  if req.waiting then
    pcall(api.nvim_buf_del_extmark, buf, ns, req.waiting)
    req.waiting = nil
  end
end

-- Reasoning ------------------------------------------------------------------------------------
-- A reasoning model's thoughts stream before its answer. They go in a block of quoted lines
-- (`> `) between the `## mlxd` header and the answer, folded once the answer starts: shown as
-- a sign of life, never part of the answer text (history, :MlxdInsert and resyncs use the
-- text alone).

local REASONING_HEAD = '> *reasoning*'

local function quoted(piece)
  return (piece:gsub('\n', '\n> '))
end

-- Append reasoning to the open block (opening it first). Reasoning that arrives after the
-- answer began is kept in req.reasoning but not written: it would land inside the answer.
local function show_reasoning(req, buf, piece)
  if req.block and not req.block.open then
    return
  end
  if not req.block then
    if req.text ~= '' then
      return
    end
    req.block = { first = api.nvim_buf_line_count(buf) - 1, open = true }
    append(buf, REASONING_HEAD .. '\n> ')
  end
  append(buf, quoted(piece))
  req.shown_reasoning = req.shown_reasoning .. piece
end

-- End the reasoning block: a blank line, then the answer; the block folds in each window.
local function close_reasoning(req, buf)
  local block = req.block
  if not (block and block.open) then
    return
  end
  block.open = false
  local last = api.nvim_buf_line_count(buf) - 1
  append(buf, '\n\n')
  req.start_row = api.nvim_buf_line_count(buf) - 1
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    -- Fails where 'foldmethod' is not manual (E350): the quotes still mark the block.
    pcall(api.nvim_win_call, win, function()
      vim.cmd(('%d,%dfold'):format(block.first + 1, last + 1))
    end)
  end
end

local said_no_key = {}

--- Why each backend before the one that answered failed, as lines for the chat footer, with
--- the fix where there is one (a missing API key: :MlxdSetKey). Also notifies once per backend
--- without a key, so it is seen outside the chat buffer too.
---@param attempts {backend: string, error: string}[]?
---@param used string? the backend that answered
---@return string[]
function M.fallback_lines(attempts, used)
  local out = {}
  for _, a in ipairs(attempts or {}) do
    local line = ('-- fallback: %s failed: %s'):format(a.backend, a.error)
    if tostring(a.error):find('no API key', 1, true) then
      local fix = (':MlxdSetKey %s'):format(a.backend)
      line = ('-- fallback: %s has no API key; set one with %s'):format(a.backend, fix)
      if not said_no_key[a.backend] then
        said_no_key[a.backend] = true
        vim.notify(
          ('mlxd: %s has no API key, %s answered instead; %s'):format(a.backend, used or '?', fix),
          vim.log.levels.WARN
        )
      end
    end
    out[#out + 1] = line
  end
  return out
end

-- The selection (or line range) of a :'<,'>MlxdChat, as a fenced block with its origin.
local function selection_block(src, line1, line2)
  local lines
  local vs, ve = vim.fn.getpos("'<"), vim.fn.getpos("'>")
  if vim.fn.visualmode() == 'v' and vs[2] == line1 and ve[2] == line2 and vim.fn.bufnr() == src then
    lines = vim.fn.getregion(vs, ve, { type = 'v' })
  else
    lines = api.nvim_buf_get_lines(src, line1 - 1, line2, true)
  end
  local name = api.nvim_buf_get_name(src)
  local where = name ~= '' and vim.fn.fnamemodify(name, ':~:.') or '[No Name]'
  return ('From `%s` (lines %d-%d):\n```%s\n%s\n```'):format(
    where,
    line1,
    line2,
    vim.bo[src].filetype,
    table.concat(lines, '\n')
  )
end

local function finish(req, buf)
  req.done = true
  vim.on_key(nil, onkey_ns)
  mlxd().unlisten(req.token)
  fire('MlxdChatDone', {
    id = req.id,
    cancelled = req.cancelled,
    err = req.err,
    result = req.result,
  })
  vim.schedule(function()
    pcall(vim.cmd.redrawstatus, { bang = true })
  end)
  return buf
end

local function on_reply(req, buf, err, result)
  req.replied = true
  stop_waiting(req, buf)
  if req.done then
    return -- cancelled meanwhile
  end
  if err then
    req.err = err
    local msg = tostring(err.message or err)
    note(buf, '[error] ' .. msg, 'ErrorMsg')
    if not err.reported then
      vim.notify('mlxd chat: ' .. msg, vim.log.levels.ERROR)
    end
    table.remove(history) -- the unanswered user turn
    return finish(req, buf)
  end
  req.result = result
  local reasoning = result.reasoning or ''
  if result.text ~= req.text or reasoning ~= req.shown_reasoning then
    -- The result is authoritative: replace what streamed (e.g. a backend that does not stream).
    req.resynced = true
    api.nvim_buf_set_lines(buf, req.answer_row, -1, true, { '' })
    req.block, req.shown_reasoning, req.start_row = nil, '', req.answer_row
    if reasoning ~= '' then
      show_reasoning(req, buf, reasoning)
    end
    close_reasoning(req, buf)
    append(buf, result.text)
  else
    close_reasoning(req, buf)
  end
  history[#history + 1] = { role = 'assistant', content = result.text }
  mlxd().record_result(result)
  local t = result.timings or {}
  local u = result.usage or {}
  local footer = {
    ('-- %s %s | %s tokens | %s'):format(
      result.backend or '?',
      result.model or '',
      tostring(u.completionTokens or '?'),
      t.totalMs and ('%.1f s'):format(t.totalMs / 1000) or '?'
    ),
  }
  vim.list_extend(footer, M.fallback_lines(result.attempts, result.backend))
  note(buf, footer)
  finish(req, buf)
end

--- Send `prompt` (plus an optional line range of `src` as context) and stream the answer.
---@param prompt string
---@param opts? {src?: integer, line1?: integer, line2?: integer, new?: boolean}
---@return mlxd.chat.Request?
function M.send(prompt, opts)
  opts = opts or {}
  if current and not current.done then
    vim.notify('mlxd: an answer is still streaming; :MlxdCancel first', vim.log.levels.WARN)
    return nil
  end
  local src = opts.src or api.nvim_get_current_buf()
  local content = prompt
  if opts.line1 then
    content = ((prompt ~= '' and prompt) or 'Explain this code.')
      .. '\n\n'
      .. selection_block(src, opts.line1, opts.line2 or opts.line1)
  end
  if content == '' then
    return nil
  end
  local src_name = vim.bo[src].buftype == '' and api.nvim_buf_get_name(src) or ''

  local buf = M.buf()
  if opts.new then
    M.reset()
  end
  M.open()

  local cfg = (mlxd().config or mlxd().defaults).chat
  local header = (api.nvim_buf_line_count(buf) == 1 and buf_text(buf) == '') and '' or '\n\n'
  if header == '' then
    api.nvim_buf_set_lines(buf, 0, -1, true, { '## You' })
  else
    append(buf, header .. '## You')
  end
  append(buf, '\n' .. content .. '\n\n## mlxd\n')

  local req = {
    token = mlxd().new_token('chat'),
    text = '',
    reasoning = '',
    shown_reasoning = '',
    deltas = 0,
    done = false,
    cancelled = false,
    replied = false,
    resynced = false,
    start_row = api.nvim_buf_line_count(buf) - 1,
  }
  req.answer_row = req.start_row
  current = req

  req.waiting = note(buf, '… waiting for the answer (a cold model may take a few seconds)')

  history[#history + 1] = { role = 'user', content = content }
  local messages = {}
  if cfg.system then
    messages[1] = { role = 'system', content = cfg.system }
  end
  vim.list_extend(messages, history)

  -- <C-c> typed while Neovim is busy (e.g. drawing the stream) is an interrupt and never reaches
  -- the mapping; on_key still sees it.
  vim.on_key(function(key, typed)
    if (typed == CTRL_C or key == CTRL_C) and api.nvim_get_current_buf() == buf then
      vim.schedule(M.cancel)
    end
  end, onkey_ns)

  mlxd().listen(req.token, function(value)
    if req.done or type(value) ~= 'table' then
      return
    end
    if type(value.reasoning) == 'string' then
      stop_waiting(req, buf)
      req.reasoning = req.reasoning .. value.reasoning
      show_reasoning(req, buf, value.reasoning)
      fire('MlxdChatReasoning', { id = req.id, reasoning = value.reasoning, backend = value.backend })
      return
    end
    if type(value.delta) ~= 'string' then
      return
    end
    stop_waiting(req, buf)
    close_reasoning(req, buf)
    req.text = req.text .. value.delta
    req.deltas = req.deltas + 1
    append(buf, value.delta)
    fire('MlxdChatUpdate', { id = req.id, delta = value.delta, backend = value.backend })
  end)

  mlxd().with_client(function(client, err)
    if req.done then
      return
    end
    if not client then
      return on_reply(req, buf, { message = err, reported = true }, nil)
    end
    req.client_id = client.id
    local params = {
      messages = messages,
      maxTokens = cfg.max_tokens,
      temperature = cfg.temperature,
      model = cfg.model,
      backend = cfg.backend,
      partialResultToken = req.token,
    }
    if src_name ~= '' then
      params.textDocument = { uri = vim.uri_from_fname(src_name) }
    end
    req.id = mlxd().request(client, 'mlxd/chat', params, function(rerr, result)
      on_reply(req, buf, rerr, result)
    end, src)
    if not req.id then
      on_reply(req, buf, { message = 'the daemon is not running' }, nil)
    end
  end)
  return req
end

--- Stop the answer that is streaming (:MlxdCancel, <C-c> in the chat buffer).
---@return boolean cancelled something
function M.cancel()
  local req = current
  if not req or req.done then
    return false
  end
  req.cancelled = true
  req.cancelled_at = vim.uv.hrtime()
  local client = req.client_id and vim.lsp.get_client_by_id(req.client_id)
  if client and req.id then
    mlxd().cancel_request(client, req.id)
  end
  local buf = M.buf()
  stop_waiting(req, buf)
  note(buf, '[cancelled]', 'WarningMsg')
  if req.text ~= '' then
    history[#history + 1] = { role = 'assistant', content = req.text }
  else
    table.remove(history)
  end
  finish(req, buf)
  return true
end

-- LspRequest autocmd: Neovim swallows the -32800 reply of a cancelled request, but marks the
-- request complete; record that so callers can see the daemon did answer.
function M._on_lsp_request(data)
  local req = current
  if req and req.id == data.request_id and req.client_id == data.client_id then
    if data.request and data.request.type == 'complete' then
      req.replied = true
      req.replied_at = vim.uv.hrtime()
      fire('MlxdChatReplied', { id = req.id, cancelled = req.cancelled })
    end
  end
end

--- The daemon of `client_id` stopped: Neovim never answers its requests in flight, so an
--- answer it was streaming ends here with an error (what came so far stays).
---@param client_id integer
---@param why string? e.g. "signal 9"; nil for a requested stop
function M._on_client_exit(client_id, why)
  local req = current
  if not req or req.done or req.client_id ~= client_id then
    return
  end
  local msg = ('the daemon stopped (%s) before it finished the answer'):format(why or 'stopped')
  on_reply(req, M.buf(), { message = msg }, nil)
end

--- Forget the conversation and clear the buffer.
function M.reset()
  if current and not current.done then
    M.cancel()
  end
  history = {}
  current = nil
  local buf = M.buf()
  api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  api.nvim_buf_set_lines(buf, 0, -1, true, {})
end

--- The last request's state (for statuslines and tests).
---@return mlxd.chat.Request?
function M.last()
  return current
end

--- The finished turns sent as context with the next prompt.
function M.history()
  return vim.deepcopy(history)
end

--- The fenced code blocks of `text` (default: the last answer), in order.
---@param text? string
---@return {lang: string, lines: string[]}[]
function M.code_blocks(text)
  if not text then
    for i = #history, 1, -1 do
      if history[i].role == 'assistant' then
        text = history[i].content
        break
      end
    end
  end
  local blocks, open = {}, nil
  for _, line in ipairs(vim.split(text or '', '\n', { plain = true })) do
    local fence, lang = line:match('^%s*(```+)%s*([%w_+.-]*)')
    if open and fence and #fence >= #open.fence and lang == '' then
      blocks[#blocks + 1] = { lang = open.lang, lines = open.lines }
      open = nil
    elseif open then
      open.lines[#open.lines + 1] = line
    elseif fence then
      open = { fence = fence, lang = lang, lines = {} }
    end
  end
  return blocks
end

--- Insert code block `n` (default: the last) of the last answer (or of `opts.text`) at the
--- cursor of the window you came from: it replaces a blank cursor line, else goes below it.
---@param n? integer negative counts from the end
---@param opts? {text?: string, win?: integer}
---@return boolean inserted
function M.insert_code(n, opts)
  opts = opts or {}
  local blocks = M.code_blocks(opts.text)
  if #blocks == 0 then
    vim.notify('mlxd: the last answer has no code block', vim.log.levels.WARN)
    return false
  end
  n = n or #blocks
  local block = blocks[n < 0 and #blocks + 1 + n or n]
  if not block then
    vim.notify(('mlxd: no code block %d (the answer has %d)'):format(n, #blocks), vim.log.levels.WARN)
    return false
  end
  local win = opts.win or api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) == chat_buf then
    win = vim.fn.win_getid(vim.fn.winnr('#'))
  end
  if win == 0 or api.nvim_win_get_buf(win) == chat_buf then
    vim.notify('mlxd: no window to insert into', vim.log.levels.WARN)
    return false
  end
  local buf = api.nvim_win_get_buf(win)
  local row = api.nvim_win_get_cursor(win)[1]
  local line = api.nvim_buf_get_lines(buf, row - 1, row, true)[1]
  local from = line:match('^%s*$') and row - 1 or row
  api.nvim_buf_set_lines(buf, from, row, true, block.lines) -- from == row: insert below
  api.nvim_win_set_cursor(win, { from + #block.lines, 0 })
  return true
end

--- The :MlxdChat command.
function M.command(args)
  local opts = { new = args.bang }
  if args.range and args.range > 0 then
    opts.src, opts.line1, opts.line2 = api.nvim_get_current_buf(), args.line1, args.line2
  end
  if args.args ~= '' or opts.line1 then
    M.send(args.args, opts)
    return
  end
  -- Ask first: a cancelled prompt (Esc, or an empty Enter) changes nothing, so the window
  -- you were in stays current and the next :'<,'>MlxdChat takes its selection.
  vim.ui.input({ prompt = 'mlxd> ' }, function(input)
    if not input or input == '' then
      return
    end
    M.send(input, { src = opts.src, new = opts.new })
  end)
end

return M
