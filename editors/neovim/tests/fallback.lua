-- Chat through a fallback: the cloud backend has no API key, local answers. The chat shows a
-- sign of life before the first token, the footer in seconds and why the fallback happened with
-- the fix (:MlxdSetKey); :MlxdModels tags the default backends' models.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local api = vim.api

local function virt(buf)
  local out = {}
  local ns = api.nvim_get_namespaces()['mlxd.chat']
  for _, m in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    for _, l in ipairs(m[4].virt_lines or {}) do
      out[#out + 1] = l[1][1]
    end
  end
  return out
end

H.run(function()
  local r = H.result
  r.notes = {}
  local notify = vim.notify
  vim.notify = function(msg, level, ...)
    table.insert(r.notes, { msg = msg, level = level })
    return notify(msg, level, ...)
  end
  H.setup({})
  local mlxd = require('mlxd')
  local chat = require('mlxd.chat')
  vim.cmd('messages clear')
  vim.cmd('MlxdModels') -- starts the daemon: no file buffer here
  local models = H.wait(function()
    local m = api.nvim_exec2('messages', { output = true }).output
    return m:find('mlxd models', 1, true) and m
  end, 10000, ':MlxdModels output')
  r.models_text = models
  mlxd.models(function(res)
    r.models = res
  end)
  H.wait(function()
    return r.models
  end, 10000, 'models')

  local first_update
  api.nvim_create_autocmd('User', {
    pattern = 'MlxdChatUpdate',
    once = true,
    callback = function()
      first_update = true
    end,
  })
  local req = chat.send('say hi')
  -- Before any token: the waiting line is there.
  r.virt_before = virt(chat.buf())
  r.updated_before = first_update == true
  H.wait(function()
    return req.done
  end, 20000, 'the answer')
  r.result = req.result
  r.virt_after = virt(chat.buf())
  r.state = mlxd.state.status and mlxd.state.status.state
end, 28000)
