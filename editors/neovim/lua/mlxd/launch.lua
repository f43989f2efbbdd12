-- Starting the daemon must never fail silently: Neovim's LSP client only writes a missing
-- executable or an early exit to lsp.log. Say it once, with the fix, and show it in status().
local M = {}

local said = {} -- message -> true: each problem is reported once per Neovim

---@type string? the last problem, for status() and :checkhealth
M.problem = nil

local EXAMPLE = '~/.venvs/mlxd/bin/mlxd'

-- How to fix a `cmd` whose executable `exe` did not run. The example path is left out when it
-- is the one that just failed (a user who copied it from the README has another venv).
local function fix(exe)
  local example = ''
  if type(exe) ~= 'string' or vim.fs.normalize(exe) ~= vim.fs.normalize(EXAMPLE) then
    example = ("(e.g. cmd = '%s') "):format(EXAMPLE)
  end
  return 'set `cmd` in require("mlxd").setup() to the full path of the mlxd executable '
    .. example
    .. '(`command -v mlxd` prints it in a shell where mlxd runs), or `pip install mlxd` into a '
    .. 'Python on $PATH; :checkhealth mlxd'
end

--- Report `msg` once as an error notification (scheduled: callers may run in a fast event).
function M.report(msg)
  M.problem = msg
  if said[msg] then
    return
  end
  said[msg] = true
  vim.schedule(function()
    vim.notify(msg, vim.log.levels.ERROR)
    pcall(vim.cmd.redrawstatus, { bang = true })
  end)
end

--- Why `cmd` cannot start, or nil when its executable is found.
---@param cmd string[]
---@return string?
function M.missing(cmd)
  local exe = cmd[1]
  if type(exe) ~= 'string' or exe == '' then
    return 'mlxd: `cmd` is empty; ' .. fix(exe)
  end
  if vim.fn.executable(exe) == 1 then
    return nil
  end
  local where = exe:find('/', 1, true) and ('%s does not exist or is not executable'):format(exe)
    or ('`%s` is not on $PATH (a venv that is not activated?)'):format(exe)
  return ('mlxd: cannot start the daemon: %s. To fix: %s'):format(where, fix(exe))
end

--- Why `cmd` must not be started now, or nil: its executable is missing, or it already exited
--- before `initialize` (restarting it for every buffer would repeat the failure).
function M.blocker(cmd)
  if M.failed then
    return M.problem
  end
  return M.missing(cmd)
end

-- Neovim's LSP log, where the client writes the daemon's stderr (at ERROR, so at the default
-- level too): its size when the daemon was last started, so only that run's lines are read.
local function log_size()
  local ok, path = pcall(vim.lsp.log.get_filename)
  local st = ok and (vim.uv or vim.loop).fs_stat(path)
  return st and st.size or 0
end

--- Check `cmd` before a start; report once and return false when it cannot run.
function M.check(cmd)
  local msg = M.blocker(cmd)
  if msg then
    M.report(msg)
    return false
  end
  M.log_mark = log_size()
  return true
end

-- Undo vim.inspect()'s escapes of a logged string (no evaluation: the text is the daemon's).
local ESCAPES = { n = '\n', t = '\t', r = '\r' }
local function unescape(s)
  local out, i = {}, 1
  while i <= #s do
    local c = s:sub(i, i)
    if c ~= '\\' then
      out[#out + 1], i = c, i + 1
    else
      local d = s:match('^%d%d?%d?', i + 1)
      if d then
        out[#out + 1], i = string.char(tonumber(d) % 256), i + 1 + #d
      else
        local n = s:sub(i + 1, i + 1)
        out[#out + 1], i = ESCAPES[n] or n, i + 2
      end
    end
  end
  return table.concat(out)
end

--- The last non-blank line that `exe` wrote to stderr since it was started, from Neovim's LSP
--- log (nil when the log has none, e.g. a log level above ERROR).
---@param exe string
---@return string?
function M.last_stderr(exe)
  local ok, path = pcall(vim.lsp.log.get_filename)
  local f = ok and io.open(path, 'rb')
  if not f then
    return nil
  end
  local size = f:seek('end')
  f:seek('set', math.max(M.log_mark or 0, size - 65536))
  local tail = f:read('*a') or ''
  f:close()
  local last
  for line in tail:gmatch('[^\n]+') do
    -- vim.inspect() quotes with ' when the text holds " and no '.
    local who, _, text = line:match('"rpc"\t"(.-)"\t"stderr"\t(["\'])(.*)%2$')
    if who == exe then
      for piece in unescape(text):gmatch('[^\n]+') do
        if piece:match('%S') then
          last = vim.trim(piece)
        end
      end
    end
  end
  return last
end

--- The client's on_exit: an exit before `initialize` finished is a start failure (a wrong
--- subcommand or option, a broken install); say so once.
---@param code integer
---@param initialized boolean
---@param cmd string[]
function M.on_exit(code, initialized, cmd)
  if initialized or code == 0 then
    return
  end
  M.failed = true
  local head = ('mlxd: the daemon exited with code %d before it started (`%s`)'):format(
    code,
    table.concat(cmd, ' ')
  )
  M.problem = head
  -- Its last stderr lines may still be on their way to the log when the exit is seen.
  vim.defer_fn(function()
    local said_why = M.last_stderr(cmd[1])
    M.report(
      head
        .. (said_why and (': ' .. said_why .. ' (all of it in :LspLog). ') or '. Its error is in :LspLog. ')
        .. 'To fix: check `cmd` and `config_file` in require("mlxd").setup(); :checkhealth mlxd'
    )
  end, 250)
end

--- The daemon stopped unexpectedly too often (restart.lua): stay stopped, say so once.
function M.give_up(msg)
  M.failed, M.gave_up = true, true
  M.report(msg)
end

--- The statusline's words for the problem, when there is one and no daemon runs.
function M.short()
  if M.gave_up then
    return 'mlxd: stopped (:MlxdRestart)'
  end
  return M.problem and 'mlxd: cannot start (:checkhealth mlxd)' or nil
end

--- Forget what was reported (after setup() with new options, :MlxdRestart).
function M.reset()
  M.problem, M.failed, M.gave_up = nil, false, false
end

return M
