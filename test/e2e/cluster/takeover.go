package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Binary is the path of the process's executable.
func (p *Process) Binary() string { return p.bin }

// Args are the process's arguments.
func (p *Process) Args() []string { return slices.Clone(p.args) }

// EtcdCount counts etcd's keys under prefix, read from etcd itself: what kube-apiserver keeps,
// whatever the aggregation layer routes to.
func (c *Cluster) EtcdCount(ctx context.Context, prefix string) (int64, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("connect to etcd: %w", err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count etcd keys under %s: %w", prefix, err)
	}
	return resp.Count, nil
}
