"""ProjectionMLP: the SimCLR and VICReg projectors' layer layout and what the output BatchNorm does."""

import torch

from sslkit.engine.param_groups import no_weight_decay
from sslkit.nn.heads import ProjectionMLP


def test_layout_without_biases_before_batchnorm():
    proj = ProjectionMLP(16, hidden_dim=32, out_dim=8, layers=3, output_bn=True)
    linears = [m for m in proj.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in proj.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [m.bias for m in linears] == [None, None, None]
    assert len(norms) == 3 and norms[-1].bias is None and norms[-1].weight.shape == (8,)
    assert all(n.bias is not None for n in norms[:-1])
    plain = ProjectionMLP(16, hidden_dim=32, out_dim=8, layers=3)
    assert not isinstance(plain.net[-1], torch.nn.BatchNorm1d) and plain.net[-1].bias is None


def test_output_batchnorm_centres_and_scales_each_output():
    torch.manual_seed(0)
    # Features that share one large common direction, as a small backbone's at initialisation.
    h = torch.randn(256, 16) * 0.1 + 3.0
    proj = ProjectionMLP(16, hidden_dim=32, out_dim=8, layers=2, output_bn=True).train()
    z = proj(h)
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.var(0, unbiased=False), torch.ones(8), atol=1e-3)
    cos = torch.nn.functional.normalize(z, dim=1)
    mean_cos = (cos @ cos.T).fill_diagonal_(0).sum() / (256 * 255)
    assert abs(mean_cos) < 0.02
    no_bn = ProjectionMLP(16, hidden_dim=32, out_dim=8, layers=2, output_bn=False).train()
    cos = torch.nn.functional.normalize(no_bn(h), dim=1)
    # Without it the outputs keep a shared direction (the failure of issue 18).
    assert ((cos @ cos.T).fill_diagonal_(0).sum() / (256 * 255)).abs() > 5 * abs(mean_cos)


def test_batchnorm_scales_are_not_weight_decayed():
    proj = ProjectionMLP(16, hidden_dim=32, out_dim=8, layers=2, output_bn=True)
    decayed = {name for name, p in proj.named_parameters() if not no_weight_decay(name, p)}
    assert decayed == {"net.0.weight", "net.3.weight"}
