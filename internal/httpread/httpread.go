// Package httpread reads collections from a Kubernetes API server over HTTP the way informers and
// kubectl do, with a chosen Accept header: a list in pages, and a watch-list's initial events.
// Tests and benchmarks (test/integration, test/e2e) use it to compare responses and to time reads.
package httpread

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// PagedList pages through the collection at u (limit, then continue tokens) with extra query
// parameters (e.g. "labelSelector=a%3Db", or "") and returns the raw items of every page.
func PagedList(ctx context.Context, hc *http.Client, u, query, accept string, limit int) ([]json.RawMessage, error) {
	var items []json.RawMessage
	cont := ""
	for {
		q := fmt.Sprintf("?limit=%d&continue=%s", limit, url.QueryEscape(cont))
		if query != "" {
			q += "&" + query
		}
		body, err := get(ctx, hc, u+q, accept)
		if err != nil {
			return nil, err
		}
		var page struct {
			Metadata struct {
				Continue string `json:"continue"`
			} `json:"metadata"`
			Items []json.RawMessage `json:"items"`
			Rows  []json.RawMessage `json:"rows"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("decode page of %s: %w", u, err)
		}
		items = append(append(items, page.Items...), page.Rows...)
		if cont = page.Metadata.Continue; cont == "" {
			return items, nil
		}
	}
}

func get(ctx context.Context, hc *http.Client, u, accept string) ([]byte, error) {
	resp, err := open(ctx, hc, u, accept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return body, nil
}

// open sends GET u with accept and returns a 200 response, or an error that quotes the start
// of any other answer.
func open(ctx context.Context, hc *http.Client, u, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %.300s", u, resp.StatusCode, body)
	}
	return resp, nil
}

// WatchList runs a watch-list request on the collection at u (sendInitialEvents, then the
// bookmark that ends them) and returns the objects of the initial ADDED events.
func WatchList(ctx context.Context, hc *http.Client, u, accept string) ([]json.RawMessage, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := open(ctx, hc,
		u+"?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=600", accept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []json.RawMessage
	dec := json.NewDecoder(bufio.NewReaderSize(resp.Body, 1<<20))
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("watch-list %s ended after %d events, before the initial-events bookmark: %w", u, len(out), err)
		}
		switch ev.Type {
		case "ADDED":
			out = append(out, ev.Object)
		case "BOOKMARK":
			if strings.Contains(string(ev.Object), "k8s.io/initial-events-end") {
				return out, nil
			}
		default:
			return nil, fmt.Errorf("watch-list %s: unexpected %s event during the initial events", u, ev.Type)
		}
	}
}
