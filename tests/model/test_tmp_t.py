import time, torch
from tests.model.test_xtmodel import make, HEAD_OPTS
def test_t():
    x=torch.randn(1,3,150,217)
    model = make("none", HEAD_OPTS)
    for i in range(3):
        t=time.time()
        with torch.no_grad(): model(x)
        print("pytest", time.time()-t, torch.get_num_threads())
