/* plugnet: the umbrella header. */
#ifndef PLUGNET_H
#define PLUGNET_H

#include <plugnet/status.h>
#include <plugnet/log.h>
#include <plugnet/tensor.h>
#include <plugnet/device.h>
#include <plugnet/op.h>
#include <plugnet/ops.h>
#include <plugnet/autograd.h>
#include <plugnet/config.h>
#include <plugnet/layer.h>
#include <plugnet/registry.h>
#include <plugnet/plugin.h>
#include <plugnet/topology.h>
#include <plugnet/threadpool.h>
#include <plugnet/checkpoint.h>
#include <plugnet/image.h>
#include <plugnet/transform.h>
#include <plugnet/data.h>
#include <plugnet/loader.h>
#include <plugnet/loss.h>
#include <plugnet/optim.h>
#include <plugnet/model.h>
#include <plugnet/pipeline.h>
#include <plugnet/train.h>
#include <plugnet/gradcheck.h>

#define PN_VERSION "0.1.0"

#endif
