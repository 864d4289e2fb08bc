-- Argo CD health of a lifeboat.dev Backup, Restore or RestoreDrill (the same phases; a
-- Restore's dry run completes with reason DryRunSucceeded, a passing drill with DrillPassed).
-- Completed: Healthy. Failed: Degraded, with the reason Lifeboat recorded (AuthenticationFailed,
-- ChecksumMismatch, VerificationFailed, DeadlineExceeded...). Pending/Running: Progressing,
-- with measured progress. A spec edit the operator has not observed yet is Progressing too
-- (kstatus does the same).
local hs = { status = "Progressing", message = "waiting for the Lifeboat operator" }
local st = obj.status
if st == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and st.observedGeneration ~= nil and st.observedGeneration < generation then
  hs.message = "the operator has not observed generation " .. tostring(generation) .. " yet"
  return hs
end
if st.phase == "Completed" then
  hs.status = "Healthy"
  hs.message = st.message or "completed"
elseif st.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (st.reason or "Failed") .. ": " .. (st.message or "no message recorded")
else
  local text = st.phase or "Pending"
  if st.progress ~= nil and st.progress.percentText ~= nil then
    text = text .. " " .. st.progress.percentText
  end
  if st.message ~= nil then
    text = text .. ": " .. st.message
  end
  hs.message = text
end
return hs
