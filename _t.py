import sys, time, torch
sys.path.insert(0, "tests/models/matchers")
from gluestick_toy import synthetic_pair, flatten, tiny_gluestick
from gluefactory.utils.tensor import collate
from gluefactory.models import get_model
items = [synthetic_pair(s) for s in range(4)]
data = flatten(collate(items))
g0, g1 = data["gt_line_matches0"], data["gt_line_matches1"]
for b in range(4):
    for i, j in enumerate(g0[b]):
        if j >= 0: assert g1[b, j] == i
print({k: tuple(v.shape) for k, v in data.items() if torch.is_tensor(v)})
torch.manual_seed(0)
m = get_model("matchers.gluestick")(tiny_gluestick(inter_supervision=[1])).train()
opt = torch.optim.Adam(m.parameters(), 3e-3)
t = time.time()
for it in range(150):
    pred = m(data); losses, metrics = m.loss(pred, data)
    opt.zero_grad(); losses["total"].mean().backward(); opt.step()
    if it % 25 == 0 or it == 149: print(it, losses["total"].mean().item(), metrics["line_match_recall"].mean().item(), metrics["match_recall"].mean().item(), time.time()-t)
m.eval()
with torch.no_grad():
    pred = m(data); _, metrics = m.loss(pred, data)
print("eval", {k: v.mean().item() for k, v in metrics.items()})
