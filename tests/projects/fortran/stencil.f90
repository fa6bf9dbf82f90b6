program stencil
  use kernels
  implicit none
  integer, parameter :: n = 20000
  real(8), allocatable :: a(:), b(:)
  integer :: i, t
  character(len=32) :: arg
  integer :: steps
  steps = 300
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read (arg, *) steps
  end if
  allocate(a(n), b(n))
  do i = 1, n
    a(i) = mod(i, 97) * 0.5d0
  end do
  do t = 1, steps
    call smooth(a, b, n)
    a = b
  end do
  write (*, '(A, F20.6)') 'sum ', sum(a)
  if (steps < 0) stop 3
end program stencil
