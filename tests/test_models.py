"""t2i.models: the UNet built from a config, and regional compilation."""

import torch


def test_regional_compilation_compiles_every_block_and_computes_the_same_step(smoke_cfg):
    """Each ResNet and attention block compiled in place: the weights keep their names (checkpoints load into an
    uncompiled UNet) and forward + backward agree with eager to float rounding. (A one-level UNet: every distinct
    block shape is one compilation, about 10 s each on this CPU with a cold cache.)"""
    import torch.nn.functional as F

    from t2i.models import build_unet, compile_regions

    cfg = smoke_cfg.replace(
        block_out_channels=(8,),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
    )
    torch.manual_seed(0)
    eager = build_unet(cfg)
    compiled = build_unet(cfg)
    compiled.load_state_dict(eager.state_dict())
    blocks = compile_regions(compiled)
    assert blocks == sum(type(m).__name__ in ("ResnetBlock2D", "Transformer2DModel") for m in eager.modules()) > 0
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    x = torch.randn(4, *cfg.model_shape)
    t = torch.tensor([1, 10, 100, 500])
    emb = torch.randn(4, cfg.max_tokens, cfg.cross_attention_dim)
    out = {}
    for name, unet in (("eager", eager), ("compiled", compiled)):
        out[name] = unet(x, t, encoder_hidden_states=emb).sample
        F.mse_loss(out[name], x).backward()
    torch.testing.assert_close(out["compiled"], out["eager"], rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5)
