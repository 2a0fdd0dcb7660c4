#!/bin/sh
# Model files and `plugnet summary`: the zoo's parameter totals equal
# torchvision's (the numbers torchvision prints for 1000 classes), blocks,
# repeats, args, includes and outputs expand as documented, and a broken
# model file gets a one-line error naming the file, line and column.
set -u
. "${PN_TOP_SRCDIR:-.}/tests/cli_expect.sh"
fx="$src/tests/fixtures/models"

# torchvision's totals (sum of p.numel() for p in model.parameters()).
expect 0 "Total params: 11,689,512" -- summary resnet18
expect 0 "Total params: 21,797,672" -- summary resnet34
expect 0 "Total params: 25,557,032" -- summary resnet50
expect 0 "Total params: 44,549,160" -- summary resnet101
expect 0 "Total params: 3,504,872" -- summary mobilenet_v2
# torchvision's state_dict names.
expect 0 "^layer1.0.downsample.0 (conv2d)" -- summary resnet50
expect 0 "^layer4.2.bn3 (batch_norm)" -- summary resnet50
expect 0 "^features.17.conv.2 (conv2d)" -- summary mobilenet_v2
expect 0 "^classifier.1 (linear)" -- summary mobilenet_v2
# The bodies end at layer4 / features.18 (the backbone's maps), and the
# classifiers that include them keep torchvision's totals above.
expect 0 "Outputs: layer4.1.relu2$" -- summary resnet18_body
expect 0 "Total params: 23,508,032" -- summary resnet50_body
expect 0 "^layer4.2.relu3 (relu) *\[-1, 2048, 28, 28\]" -- summary resnet50_body --set stride3=1 --set dilation3=2 --set stride4=1 --set dilation4=4
expect 0 "Outputs: features.18.2$" -- summary mobilenet_v2_body
# fastai's cnn_learner(resnet34, bn_final=True) for 37 classes (seed 000).
# 21,831,599 is what the seed's learn.summary() prints, and what PyTorch
# counts for torchvision.models.resnet34() without avgpool and fc followed by
# Sequential(AdaptiveConcatPool2d, Flatten, BatchNorm1d(1024), Dropout,
# Linear(1024, 512), ReLU, BatchNorm1d(512), Dropout, Linear(512, 37),
# BatchNorm1d(37)): sum(p.numel() for p in model.parameters()). Without the
# linears' biases (fastai 2.x) torch counts 21,831,050.
expect 0 "Total params: 21,831,599" -- summary resnet34_fastai
expect 0 "Total params: 21,831,050" -- summary resnet34_fastai --set head_bias=false
# The head's batch-norms run on [C] samples (BatchNorm1d), under fastai's
# indices.
expect 0 "^head.0 (adaptive_concat_pool2d) *\[-1, 1024, 1, 1\]" -- summary resnet34_fastai
expect 0 "^head.2 (batch_norm) *\[-1, 1024\] *2,048" -- summary resnet34_fastai
expect 0 "^head.6 (batch_norm) *\[-1, 512\] *1,024" -- summary resnet34_fastai
expect 0 "^head.8 (linear) *\[-1, 37\] *18,981" -- summary resnet34_fastai
expect 0 "^head.9 (batch_norm) *\[-1, 37\] *74" -- summary resnet34_fastai
expect 0 "^head.9 (batch_norm) *\[-1, 10\] *20" -- summary resnet34_fastai --set n_out=10 --input 3x352x352
expect 1 "not one of the model's args" -- summary resnet34_fastai --set num_classes=10
# Args and input from the command line.
expect 0 "^fc (linear) *\[-1, 10\] *5,130" -- summary resnet18 --set num_classes=10
expect 0 "^avgpool.*\[-1, 512, 1, 1\]" -- summary resnet18 --input 3x64x64
expect 1 "no argument\|not one of the model's args" -- summary resnet18 --set num_clases=10
expect 2 "3x224x224" -- summary resnet18 --input 3xx

# The fixture: 12 -> stem 12 -> two residual copies -> wide (6, then 4) ->
# concat(stem, wide) = 16 -> head 3.
expect 0 "^body.1.add (add) *\[-1, 12\]" -- summary "$fx/tiny.yaml"
expect 0 "^wide.0.fc (linear) *\[-1, 6\] *78" -- summary "$fx/tiny.yaml"
expect 0 "^wide.1.fc (linear) *\[-1, 4\] *28" -- summary "$fx/tiny.yaml"
expect 0 "^both (concat) *\[-1, 16\]" -- summary "$fx/tiny.yaml"
expect 0 "Outputs: head, body.1.add" -- summary "$fx/tiny.yaml"
# 156 + 2*156 + 78 + 28 + 51
expect 0 "Total params: 625" -- summary "$fx/tiny.yaml"
expect 0 "^body.2.add" -- summary "$fx/tiny.yaml" --set depth=3

# An including file may declare args for its own layers, and override the
# included model's (classes=7 feeds head's 16*7+7), but a misspelt one fails.
expect 0 "^head2 (linear) *\[-1, 4\] *32" -- summary "$fx/with_head.yaml"
expect 0 "^head (linear) *\[-1, 7\] *119" -- summary "$fx/with_head.yaml"
expect 1 "bad_fresh.yaml:2:.*no argument 'clases' (did you mean 'classes'?)" -- summary "$fx/bad_fresh.yaml"

# Errors: one line, file:line:col where there is one.
expect 1 "cycle_.\.yaml.*more than 8 levels" -- summary "$fx/cycle_a.yaml"
expect 1 "bad_input.yaml:4:.*'later' is not an earlier node" -- summary "$fx/bad_input.yaml"
expect 1 "bad_arg.yaml:3:.*unknown argument '\$missing'" -- summary "$fx/bad_arg.yaml"
expect 1 "bad_block_arg.yaml:4:.*no argument 'widht'" -- summary "$fx/bad_block_arg.yaml"
expect 1 "no model file 'nosuchmodel'" -- summary nosuchmodel
"$cli" summary "$fx/bad_input.yaml" >"$out" 2>"$err"
[ "$(wc -l <"$err")" -eq 1 ] || fail "a model file error is not one line"

[ "$failures" -eq 0 ] && echo "all model checks passed"
exit "$failures"
