-- Commands only; nothing starts until require("mlxd").setup() or the first command.
if vim.g.loaded_mlxd then
  return
end
vim.g.loaded_mlxd = true

if vim.fn.has('nvim-0.10') == 0 then
  vim.api.nvim_echo({ { 'mlxd needs Neovim 0.10 or newer', 'WarningMsg' } }, true, {})
  return
end

local function mlxd()
  local m = require('mlxd')
  m.ensure_setup()
  return m
end

local command = vim.api.nvim_create_user_command

command('MlxdChat', function(args)
  mlxd()
  require('mlxd.chat').command(args)
end, {
  nargs = '*',
  range = true,
  bang = true,
  desc = 'mlxd: ask in the chat buffer (range: selection as context; !: new conversation)',
})

command('MlxdCancel', function()
  local m = mlxd()
  if require('mlxd.chat').cancel() then
    return
  end
  -- No answer streams: stop a model download (or load) instead.
  local stopped = m.cancel_load()
  if #stopped > 0 then
    vim.notify('mlxd: cancelling ' .. table.concat(stopped, '; '))
  else
    vim.notify('mlxd: nothing to cancel')
  end
end, { desc = 'mlxd: stop the answer that is streaming, else a model download' })

command('MlxdModels', function()
  mlxd().models()
end, { desc = 'mlxd: list models and defaults' })

command('MlxdSetKey', function(args)
  mlxd().set_key(args.args, args.bang)
end, {
  nargs = 1,
  complete = function(lead)
    return vim.tbl_filter(function(name)
      return vim.startswith(name, lead)
    end, require('mlxd').backend_names())
  end,
  bang = true,
  desc = 'mlxd: hand an API key for {backend} to the daemon (! also stores it in the keyring)',
})

command('MlxdRestart', function()
  mlxd()
  require('mlxd.restart').command(function()
    vim.notify('mlxd: daemon restarted')
  end)
end, { desc = 'mlxd: stop the daemon and start it again for the buffers it serves' })

command('MlxdStatus', function()
  local s = mlxd().status()
  vim.notify(s ~= '' and s or 'mlxd: not running')
end, { desc = 'mlxd: show the daemon state' })

command('MlxdToggle', function(args)
  mlxd()
  require('mlxd.toggle').command(args)
end, { bang = true, desc = 'mlxd: ghost text on/off in this buffer (!: everywhere)' })

command('MlxdInsert', function(args)
  mlxd()
  require('mlxd.chat').insert_code(args.count > 0 and args.count or nil)
end, {
  count = 0,
  desc = 'mlxd: insert the last code block of the chat answer at the cursor ([N]: block N)',
})

command('MlxdPick', function()
  mlxd()
  require('mlxd.picker').pick()
end, { desc = 'mlxd: choose the model/backend chat uses (vim.ui.select)' })
