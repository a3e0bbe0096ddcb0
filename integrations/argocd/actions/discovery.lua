-- Argo CD resource actions for cutover.io/Migration: the same requests as `cutover promote` etc.
-- Each action only sets the `cutover.io/request` annotation ("<verb>:<id>"); the operator acts on
-- it once and clears it, so a later sync never replays or reverts it.
local actions = {}
local phase = obj.status and obj.status.phase or ""
local running = phase == "Pending" or phase == "Progressing" or phase == "Paused"
actions["promote"] = {disabled = not running}
actions["promote-full"] = {disabled = not running}
actions["pause"] = {disabled = phase ~= "Progressing"}
actions["resume"] = {disabled = phase ~= "Paused"}
actions["abort"] = {disabled = not running}
actions["retry"] = {disabled = phase ~= "RolledBack" and phase ~= "Failed"}
-- Undo only while a rollback window is open (blue still at full size after success).
local window_open = false
for _, condition in ipairs(obj.status and obj.status.conditions or {}) do
  if condition.type == "RollbackWindow" and condition.status == "True" then
    window_open = true
  end
end
actions["undo"] = {disabled = not window_open}
return actions
