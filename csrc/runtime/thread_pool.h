// Runtime layer: a persistent pool of worker threads.
//
// `run(n, fn)` calls fn(0) .. fn(n-1) concurrently, fn(0) on the calling
// thread, and returns when all are done.  Work is split by the caller into
// exactly one task per thread (static partition keeps each core on the same
// block of packed weights, which then stays in its L2).  Workers spin briefly
// after a job before sleeping, so back-to-back calls do not pay a wake-up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace eb {

class ThreadPool {
 public:
  static ThreadPool& instance();

  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const;
  void set_num_threads(int n);  // n >= 1
  void run(int n, const std::function<void(int)>& fn);

 private:
  ThreadPool();
  void start_workers(int count);
  void stop_workers();
  void worker_loop(int index, unsigned long seen);

  mutable std::mutex run_mutex_;  // one job at a time; guards resizing too
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int job_threads_ = 0;
  std::atomic<unsigned long> generation_{0};  // written under mutex_, read by spinning workers
  int pending_ = 0;
  bool stop_ = false;
  int num_threads_ = 1;
};

// Default thread count: EIGHTBIT_NUM_THREADS is read by the Python layer;
// here, the hardware's concurrency.
int default_num_threads();

// Splits [0, n) into one contiguous range per thread, using only as many
// threads as get at least `min_work_per_thread` units of work each (n items
// of `work_per_item` units): below that, a wake-up costs more than it saves.
template <typename Fn>
void parallel_for(int64_t n, int64_t work_per_item, int64_t min_work_per_thread, Fn&& fn) {
  const double work = static_cast<double>(n) * static_cast<double>(work_per_item > 1 ? work_per_item : 1);
  const double wanted = work / static_cast<double>(min_work_per_thread);
  const int pool = ThreadPool::instance().num_threads();
  const int threads = wanted < 1.0 ? 1 : (wanted > pool ? pool : static_cast<int>(wanted));
  if (threads <= 1 || n < threads) {
    fn(int64_t{0}, n);
    return;
  }
  ThreadPool::instance().run(threads, [&](int t) { fn(n * t / threads, n * (t + 1) / threads); });
}

}  // namespace eb
