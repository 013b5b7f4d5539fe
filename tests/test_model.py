from __future__ import annotations

import io

import pytest
import torch

from cosingan.gan.encoding import one_hot
from cosingan.gan.config import ModelConfig
from cosingan.gan.model import CoSinGAN, Critic, OutConv, ScaleGenerator
from cosingan.gan.pyramid import condition_pyramid, scale_sizes

SIZES = scale_sizes(40, 32, 12, 40, 0.7)


def _conds(batch=2, body=True):
    lab = torch.zeros(batch, 40, 32, dtype=torch.long)
    lab[:, 5:35, 4:14] = 2
    lab[:, 5:35, 18:28] = 2
    lab[:, 20:30, 6:12] = 3
    lab[:, :, :2] = 0
    lab[lab == 0] = 1
    lab[:, :3] = 0
    return condition_pyramid(one_hot(lab, body), SIZES)


@pytest.mark.parametrize("two_stage", [True, False])
@pytest.mark.parametrize("body", [True, False])
def test_forward_shapes_per_scale(two_stage, body):
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2, two_stage=two_stage, body_channel=body)
    m = CoSinGAN(cfg, SIZES)
    m.noise_amp.fill_(0.1)
    conds = _conds(2, body)
    noises = m.draw_noise(conds)
    assert [tuple(z.shape) for z in noises] == [(2, 2, *s) for s in SIZES]
    x = None
    for i, s in enumerate(SIZES):  # scale by scale equals all at once
        x1, x = m(conds, noises, i, i + 1, x=x)
        assert x.shape == (2, 1, *s) and x1.shape == (2, 1, *s)
    assert torch.allclose(x, m(conds, noises)[1])
    assert (m.lung_critics is not None) == two_stage
    assert (m.gens[0].refine is not None) == two_stage
    assert m.critics[0](x, conds[-1]).shape == (2, 1, *SIZES[-1])


def test_refinement_only_touches_the_lung_region():
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2, two_stage=True)
    m = CoSinGAN(cfg, SIZES)
    m.noise_amp.fill_(0.5)
    conds = _conds(1)
    x1, x2 = m(conds, m.draw_noise(conds))
    lung = conds[-1][:, 2:].sum(1, keepdim=True)
    near_lung = torch.nn.functional.max_pool2d(lung, 3, stride=1, padding=1) > 0
    assert torch.equal(x1[~near_lung], x2[~near_lung])  # outside the (dilated) lung: stage 1 untouched
    assert not torch.equal(x1[near_lung], x2[near_lung])


def test_state_dict_round_trip_holds_buffers_and_loads_weights_only(tmp_path):
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2)
    m = CoSinGAN(cfg, SIZES)
    m.noise_amp.copy_(torch.linspace(1, 0.1, len(SIZES)))
    m.rec_noise.normal_()
    sd = m.state_dict()
    assert {"noise_amp", "rec_noise", "sizes", "trained"} <= set(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    m2 = CoSinGAN(cfg, SIZES)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    conds = _conds(1)
    z = m.draw_noise(conds, torch.Generator().manual_seed(3))
    assert torch.equal(m(conds, z)[1], m2(conds, z)[1])


def test_model_runs_on_other_condition_sizes():
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2)
    m = CoSinGAN(cfg, SIZES)
    other = scale_sizes(64, 64, 12, 64, 0.7)[: len(SIZES)]
    lab = torch.randint(0, 4, (1, 64, 64))
    conds = condition_pyramid(one_hot(lab, True), other)
    assert m(conds, m.draw_noise(conds))[1].shape[-2:] == other[-1]


@pytest.mark.parametrize("win", [(slice(3, 20), slice(5, 17)), (slice(0, 12), slice(0, 10)),
                                 (slice(25, 40), slice(20, 32)), (slice(None), slice(None))])
@pytest.mark.parametrize("two_stage,padding,modulation", [(True, "zeros", False), (False, "zeros", False),
                                                          (True, "replicate", False), (True, "reflect", False),
                                                          (True, "zeros", True), (True, "replicate", True)])
def test_windowed_scale_equals_cropped_full_output(win, two_stage, padding, modulation):
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2, two_stage=two_stage, padding=padding,
                      modulation=modulation)
    m = CoSinGAN(cfg, SIZES)
    if modulation:  # away from their zero start, so that the map's modulation reaches the output
        torch.manual_seed(1)
        for g in m.gens:
            for net in (g.structure, g.refine):
                for mod in net.mods:
                    torch.nn.init.normal_(mod.weight, std=0.3)
    m.noise_amp.fill_(0.3)
    conds = _conds(2)
    noises = m.draw_noise(conds, torch.Generator().manual_seed(0))
    i = len(SIZES) - 1
    prev = m(conds, noises, 0, i)[1]
    full1, full2 = m(conds, noises, i, i + 1, x=prev)
    w1, w2 = m.scale_window(i, prev, conds[i], noises[i], win)
    torch.testing.assert_close(w1, full1[..., win[0], win[1]], rtol=0, atol=1e-6)
    torch.testing.assert_close(w2, full2[..., win[0], win[1]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("padding,flat", [("zeros", False), ("replicate", True), ("reflect", True)])
def test_padding_decides_the_frame(padding, flat):
    """A uniform input gives a uniform output unless the padding (zeros: mid-grey) draws a frame."""
    torch.manual_seed(0)
    g = ScaleGenerator(ModelConfig(channels=8, num_layers=3, padding=padding, two_stage=False), 3)
    cond = torch.zeros(1, 4, 16, 16)
    cond[:, 1] = 1  # all body
    with torch.no_grad():
        x = g(torch.full((1, 1, 16, 16), 0.6), cond, torch.zeros(1, 2, 16, 16), torch.tensor(0.0))[0]
    spread = float(x.max() - x.min())
    assert (spread < 1e-6) == flat, spread


def test_coarse_scales_can_be_deeper():
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2, coarse_layers=5, coarse_max=20)
    m = CoSinGAN(cfg, SIZES)
    assert m.layers == [5 if min(s) <= 20 else 3 for s in SIZES] and 5 in m.layers and 3 in m.layers
    convs = [sum(isinstance(x, torch.nn.Conv2d) for x in g.structure) for g in m.gens]
    assert convs == m.layers
    conds = _conds(1)
    assert m(conds, m.draw_noise(conds))[1].shape[-2:] == SIZES[-1]


def test_modulation_starts_as_the_plain_generator_and_the_map_then_steers_every_layer():
    """With `modulation` each hidden layer is scaled and shifted by convs of the map; they start at zero, so
    the untrained modulated generator computes what the plain one with the same conv weights computes."""
    plain = ScaleGenerator(ModelConfig(channels=8, num_layers=3, refine_layers=2), 3)
    mod = ScaleGenerator(ModelConfig(channels=8, num_layers=3, refine_layers=2, modulation=True), 3)
    for p_net, m_net in ((plain.structure, mod.structure), (plain.refine, mod.refine)):
        convs = [c for c in p_net if isinstance(c, torch.nn.Conv2d)]
        assert len(convs) == len(m_net.convs) and len(m_net.mods) == len(convs) - 1
        for a, b in zip(convs, m_net.convs):
            b.load_state_dict(a.state_dict())
        assert all(c.in_channels == 4 and c.out_channels == 16 for c in m_net.mods)  # map -> scale and shift
    cond = _conds(2)[-1]
    args = (torch.rand(2, 1, *cond.shape[-2:]) * 2 - 1, cond, torch.randn(2, 2, *cond.shape[-2:]),
            torch.tensor(0.2))
    with torch.no_grad():
        for a, b in zip(plain(*args), mod(*args)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        torch.nn.init.normal_(mod.structure.mods[1].weight, std=0.3)  # the last hidden layer's modulation
        assert not torch.allclose(plain(*args)[0], mod(*args)[0], atol=1e-3)


@pytest.mark.parametrize("modulation", [False, True])
def test_cpu_placement_is_channels_last_and_computes_the_same(modulation):
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2, modulation=modulation)
    torch.manual_seed(0)
    nchw = CoSinGAN(cfg, SIZES)
    nchw.noise_amp.fill_(0.3)
    if modulation:
        for g in nchw.gens:
            for mod in g.structure.mods:
                torch.nn.init.normal_(mod.weight, std=0.3)
    last = CoSinGAN(cfg, SIZES)
    last.load_state_dict(nchw.state_dict())
    last.place(torch.device("cpu"))
    convs = [m for m in last.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    first = next(m for m in nchw.modules() if isinstance(m, torch.nn.Conv2d))
    assert not first.weight.is_contiguous(memory_format=torch.channels_last)  # unplaced: the default format
    conds = _conds(2)
    noises = nchw.draw_noise(conds, torch.Generator().manual_seed(0))
    a, b = nchw(conds, noises)[1], last(conds, noises)[1]
    assert b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)  # another summation order, the same function
    # a checkpoint written from either loads into the other
    nchw.load_state_dict(last.state_dict())
    torch.testing.assert_close(nchw(conds, noises)[1], a, rtol=0, atol=0)


def test_critic_layout_path_sees_four_times_as_far_and_keeps_the_score_map_size():
    """A 3-layer critic's score at a pixel depends on 7 x 7 input pixels; the layout path on the 4x pooled
    input reaches ~4x as far, and its scores come back at the input's size."""
    cond = _conds(1)[-1]
    x = torch.zeros(1, 1, *cond.shape[-2:], requires_grad=True)
    reach = {}
    for layout in (False, True):
        torch.manual_seed(0)
        critic = Critic(ModelConfig(channels=8, critic_layout=layout), 3)
        out = critic(x, cond)
        assert out.shape == (1, 1, *cond.shape[-2:])
        (g,) = torch.autograd.grad(out[0, 0, 20, 16], x)
        rows = g[0, 0].abs().sum(1).nonzero().flatten()
        reach[layout] = int(rows.max() - rows.min()) + 1
    assert reach[False] == 7 and reach[True] >= 20


def test_critic_layout_trains_with_the_penalty_and_odd_sizes():
    from cosingan.gan.losses import critic_loss

    cond = _conds(2)[-1][..., :37, :29]  # not a multiple of the pooling
    critic = Critic(ModelConfig(channels=8, critic_layout=True), 3)
    real, fake = torch.rand(2, 1, 37, 29), torch.rand(2, 1, 37, 29)
    loss, _ = critic_loss(critic, real, fake, cond, 0.1)
    loss.backward()
    weights = [p for p in critic.layout.parameters() if p.dim() == 4]  # (the last bias cancels in a WGAN loss)
    assert torch.isfinite(loss) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


@pytest.mark.parametrize("padding", ["zeros", "replicate", "reflect"])
@pytest.mark.parametrize("cout", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_last_conv_at_inference_is_the_conv_as_nine_shifted_taps(padding, cout, channels_last):
    torch.manual_seed(0)
    conv = OutConv(5, cout, 3, padding=1, padding_mode=padding)
    x = torch.randn(2, 5, 9, 11)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    plain = torch.nn.Conv2d.forward(conv, x)
    torch.testing.assert_close(conv(x), plain, rtol=0, atol=0)  # training: the conv itself
    conv.eval()
    out = conv(x)
    assert out.shape == plain.shape
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
    conv.weight.data[:, :, 0, 2] += 1.0  # one tap moved: the taps are not a blur of the conv
    assert (conv(x) - out).abs().amax() > 0.1


def test_a_model_at_inference_draws_what_it_draws_in_training():
    cfg = ModelConfig(channels=8, num_layers=3, refine_layers=2)
    torch.manual_seed(0)
    m = CoSinGAN(cfg, SIZES).place(torch.device("cpu"))
    m.noise_amp.fill_(0.3)
    conds = _conds(2)
    noises = m.draw_noise(conds, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = m(conds, noises)[1]
        b = m.eval()(conds, noises)[1]
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
