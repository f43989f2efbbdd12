-- :MlxdSetKey {backend} checks the name against the configured backends first (an unknown one
-- is refused before the prompt; <Tab> completes the names), then reads the key without echo and
-- sends mlxd/setApiKey; the key shows up in no message and not in the LSP log (which is at debug
-- level here).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local backend = assert(os.getenv('MLXD_TEST_BACKEND'), 'MLXD_TEST_BACKEND not set')
local key = assert(os.getenv('MLXD_TEST_KEY'), 'MLXD_TEST_KEY not set')

H.run(function()
  local r = H.result
  vim.lsp.log.set_level('debug')
  H.setup({})
  local notes = {}
  local notify = vim.notify
  vim.notify = function(msg, level, opts)
    notes[#notes + 1] = { msg = msg, level = level }
    return notify(msg, level, opts)
  end

  -- A name that is not a configured backend is refused before the key is asked for, with the
  -- configured names; then <Tab> completes the names.
  r.unknown_prompted = false
  local prompt = api.nvim_create_autocmd('CmdlineEnter', {
    pattern = '[@-]', -- input() / inputsecret()
    callback = function()
      r.unknown_prompted = true
      api.nvim_input('x<CR>')
    end,
  })
  H.keys(':MlxdSetKey openai<CR>')
  H.wait(function()
    return #notes > 0
  end, 20000, 'the refusal')
  api.nvim_del_autocmd(prompt)
  r.unknown_notes = notes
  r.completion = vim.fn.getcompletion('MlxdSetKey ', 'cmdline')
  r.completion_c = vim.fn.getcompletion('MlxdSetKey c', 'cmdline')
  notes = {}

  -- The configured name: the key is asked for once the name is checked (typed when the prompt
  -- opens, as a user would; typed ahead it would run as Normal-mode keys).
  api.nvim_create_autocmd('CmdlineEnter', {
    once = true,
    pattern = '[@-]',
    callback = function()
      api.nvim_input(key .. '<CR>')
    end,
  })
  H.keys(':MlxdSetKey ' .. backend .. '<CR>')
  H.wait(function()
    return #notes > 0
  end, 20000, 'a notification about the key')
  r.notes = notes
  r.messages = api.nvim_exec2('messages', { output = true }).output
  vim.wait(200)
  local f = assert(io.open(vim.lsp.log.get_filename()))
  local log = f:read('*a')
  f:close()
  r.log_has_setkey = log:find('mlxd/setApiKey', 1, true) ~= nil
  r.log_has_key = log:find(key, 1, true) ~= nil
  r.log_level_restored = vim.lsp.log.get_level() == vim.log.levels.DEBUG

  -- An unknown backend is refused with the daemon's message.
  notes = {}
  require('mlxd').set_key('no-such-backend', false, 'x-' .. key, function(ok, err)
    r.unknown = { ok = ok, err = err }
  end)
  H.wait(function()
    return r.unknown
  end, 5000, 'the refusal')
end, 28000)
