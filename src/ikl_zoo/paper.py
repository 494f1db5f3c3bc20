"""The IKL-AT paper, named once for the registry, records, boards and cards."""

PAPER_TITLE = "Decoupled Kullback-Leibler Divergence Loss"
PAPER_VENUE = "NeurIPS 2024"
PAPER_URL = "https://arxiv.org/abs/2305.13948"
PAPER_AUTHORS = "Jiequan Cui, Zhuotao Tian, Zhisheng Zhong, Xiaojuan Qi, Bei Yu, Hanwang Zhang"
