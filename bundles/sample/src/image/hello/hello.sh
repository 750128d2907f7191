#!/bin/sh
echo "hello from an image that crossed the air gap"
