-- Argo CD action "undo" for cutover.io/Migration: asks the operator, through the request
-- annotation, to undo. The id only has to differ from the last handled request.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["cutover.io/request"] = "undo:argocd-" .. os.date("!%Y%m%dT%H%M%SZ")
return obj
