-- :MlxdPick: choose what chat uses, with vim.ui.select (so Telescope, fzf-lua, snacks or
-- dressing show it if installed): "routing" (the daemon's own order, with fallback) or one of
-- the models the daemon knows, which pins its backend (`backend` in mlxd/chat: no fallback).
local M = {}

local function mlxd()
  return require('mlxd')
end

--- The choices for the daemon's `mlxd/models` result: {label, backend?, model?}.
function M.choices(result)
  local out = { { label = 'routing (the daemon picks, with fallback)' } }
  for _, m in ipairs(result.models or {}) do
    local tags = mlxd().default_kinds(result, m.backend)
    out[#out + 1] = {
      label = ('%s [%s]%s'):format(
        m.name,
        m.backend,
        #tags > 0 and (' default: ' .. table.concat(tags, ', ')) or ''
      ),
      backend = m.backend,
    }
  end
  return out
end

--- Ask the daemon for its models and let the user pick; cb(choice or nil) after it is applied.
---@param cb? fun(choice: table?)
function M.pick(cb)
  mlxd().models(function(result)
    if not result then
      return cb and cb(nil)
    end
    vim.ui.select(M.choices(result), {
      prompt = 'mlxd chat uses:',
      format_item = function(c)
        return c.label
      end,
    }, function(choice)
      if choice then
        local chat = (mlxd().config or mlxd().defaults).chat
        chat.backend = choice.backend
        vim.notify('mlxd: chat uses ' .. choice.label)
      end
      return cb and cb(choice)
    end)
  end)
end

return M
