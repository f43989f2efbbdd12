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

--- Check `cmd` before a start; report once and return false when it cannot run.
function M.check(cmd)
  local msg = M.blocker(cmd)
  if msg then
    M.report(msg)
    return false
  end
  return true
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
  M.report(
    ('mlxd: the daemon exited with code %d before it started (`%s`). Its error is in :LspLog. '):format(
      code,
      table.concat(cmd, ' ')
    ) .. 'To fix: check `cmd` and `config_file` in require("mlxd").setup(); :checkhealth mlxd'
  )
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
