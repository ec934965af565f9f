module github.com/rexi-go/rexi

go 1.26

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/klauspost/compress v1.20.4
	go.uber.org/goleak v1.3.0
)

require github.com/stretchr/testify v1.10.0 // indirect
