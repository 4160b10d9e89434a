mod loadgen;
